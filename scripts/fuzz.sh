#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each
# (default 10s), e.g. `make fuzz FUZZTIME=10m`. Inputs the fuzzer found
# interesting are copied from the Go build cache into the package's
# testdata/fuzz/<target>, so the corpus is kept in the repository and
# every `go test` run replays it.
set -euo pipefail
t=${1:-10s}
cd "$(dirname "$0")/.."
status=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "fuzz: $pkg $name for $t"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" || status=1
  cache="$(go env GOCACHE)/fuzz/$(go list "$pkg")/$name"
  if [ -d "$cache" ]; then
    mkdir -p "$pkg/testdata/fuzz/$name"
    cp -n "$cache"/* "$pkg/testdata/fuzz/$name/" 2>/dev/null || true
  fi
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort)
exit $status
