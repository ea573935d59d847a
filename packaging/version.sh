#!/bin/sh
# The package version from git, valid for Debian and RPM (no "-"):
#   tag v1.2.3 on HEAD, clean tree   1.2.3
#   5 commits after v1.2.3            1.2.3+git5.g1a2b3c4
#   no tag                            0.0~git20261203.1a2b3c4
# and ".dirty" appended when the work tree has changes.
set -eu
dirty=
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=.dirty
fi
if d=$(git describe --tags --match 'v[0-9]*' --long 2>/dev/null); then
	hash=${d##*-}
	rest=${d%-*}
	n=${rest##*-}
	tag=${rest%-*}
	v=${tag#v}
	v=$(printf %s "$v" | tr - '~')
	if [ "$n" = 0 ]; then
		echo "$v$dirty"
	else
		echo "$v+git$n.$hash$dirty"
	fi
	exit 0
fi
date=$(TZ=UTC git log -1 --date=format-local:%Y%m%d --format=%cd)
hash=$(git rev-parse --short=7 HEAD)
echo "0.0~git$date.$hash$dirty"
