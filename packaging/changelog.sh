#!/bin/sh
# changelog.sh VERSION MAINTAINER: the Debian changelog of a package built
# from this git tree (one entry: the commit it was built from), dated by
# the commit so that the same commit gives the same file.
set -eu
version=$1 maintainer=$2
commit=$(git rev-parse HEAD)
subject=$(git log -1 --format=%s | cut -c1-60)
date=$(LC_ALL=C git log -1 --date=rfc2822 --format=%cd)
cat <<END
tpm-u2f ($version) unstable; urgency=medium

  * Built from git commit $commit
    ($subject).

 -- $maintainer  $date
END
