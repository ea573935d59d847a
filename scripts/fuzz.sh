#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each
# (default 10s), e.g. `make fuzz FUZZTIME=10m`. The corpus found is kept in
# the Go build cache; the seed corpus lives in each package's testdata/fuzz.
set -euo pipefail
t=${1:-10s}
cd "$(dirname "$0")/.."
status=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "fuzz: $pkg $name for $t"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" || status=1
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort)
exit $status
