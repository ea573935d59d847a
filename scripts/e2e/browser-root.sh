#!/usr/bin/env bash
# The browser root for the e2e guest's browser tests (E2E_BROWSER=1): a
# debootstrap (minbase) Debian root with Chromium and Firefox ESR, built
# once into build/e2e/browser-root and shared into the guest read-only over
# 9p. Needs root (debootstrap, chroot) and the Debian mirror apt uses here
# (E2E_MIRROR overrides it).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/build/e2e
D=$B/browser-root
SUITE=${E2E_SUITE:-bookworm}
# What the guest runs from the root. The list is stamped into the root
# (.packages): a root built for a shorter list gets the missing packages
# added by apt-get in place, instead of being debootstrapped again.
PKGS="chromium firefox-esr fonts-dejavu-core xvfb xauth xdotool x11-apps netpbm"
[ -f "$D/.complete" ] && [ "$(cat "$D/.packages" 2>/dev/null)" = "$PKGS" ] && exit 0
[ "$(id -u)" -eq 0 ] || { echo "browser-root: needs root (debootstrap, chroot)" >&2; exit 1; }
# The mirror apt uses on this machine (deb822 or one-line sources).
mirror=${E2E_MIRROR:-$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true) |
  grep -Eo 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
secmirror=${mirror%/debian*}/debian-security
if [ ! -f "$D/.complete" ]; then
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  echo "browser-root: debootstrap --variant=minbase $SUITE from $mirror (a few minutes, once)"
  rm -rf "$D"
  debootstrap --variant=minbase "$SUITE" "$D" "$mirror" > "$B/debootstrap.log" 2>&1 || { tail -20 "$B/debootstrap.log"; exit 1; }
else
  echo "browser-root: adding packages to the existing root ($PKGS)"
fi
# Chromium and Firefox ESR come through the security suite in Debian stable.
cat > "$D/etc/apt/sources.list" <<SRC
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb $secmirror $SUITE-security main
SRC
cp /etc/resolv.conf "$D/etc/resolv.conf"
mount -t proc proc "$D/proc"
trap 'umount "$D/proc" 2>/dev/null || umount -l "$D/proc" 2>/dev/null || true' EXIT
# apt-get install leaves packages already there alone: on an existing root
# this installs only what the list gained.
chroot "$D" sh -c "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends --no-upgrade $PKGS && apt-get clean" > "$B/browser-apt.log" 2>&1 || { tail -20 "$B/browser-apt.log"; exit 1; }
chroot "$D" chromium --version
chroot "$D" firefox-esr --version
umount "$D/proc" || umount -l "$D/proc" # a process chromium left may hold it a while
rm -rf "$D"/var/lib/apt/lists/* "$D"/usr/share/doc "$D"/usr/share/man
touch "$D/.complete"
echo "$PKGS" > "$D/.packages"
