#!/usr/bin/env bash
# The Debian root for `make e2e-deb` (scripts/e2e/deb.sh): a debootstrap
# (minbase) bookworm with systemd as init, udev, logind, the user session
# bus, tpm-udev and libfido2's tools, plus whatever the .deb depends on
# (apt-get satisfy on its Depends: and Recommends:, as apt would install
# them) — but not the .deb itself, which is installed only inside the
# guest. Built once into build/e2e/deb-root and shared read-only into the
# guest over 9p. Usage: deb-root.sh PATH/TO/tpm-u2f_*.deb
# Needs root (debootstrap, chroot) and the Debian mirror apt uses here
# (E2E_MIRROR overrides it).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/build/e2e
D=$B/deb-root
SUITE=${E2E_SUITE:-bookworm}
DEB=${1:?usage: deb-root.sh tpm-u2f_VERSION_ARCH.deb}
# What the root must hold for this .deb. A root built for other
# dependencies is brought up to date (apt-get satisfy) instead of rebuilt.
# The kernel's modules too: a new kernel in build/e2e/kernel is linked in
# again.
kver=$(basename "$(ls -d "$B"/kernel/lib/modules/* | head -1)")
want="$(dpkg-deb -f "$DEB" Depends) | $(dpkg-deb -f "$DEB" Recommends)"
if [ -f "$D/.complete" ] && [ "$(cat "$D/.complete")" = "$want" ] && [ -d "$D/lib/modules/$kver" ]; then exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "deb-root: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null

mounted=""
cleanup() { for m in $mounted; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
chroot_apt() {
  mount -t proc proc "$D/proc"; mounted="$D/proc"
  cp /etc/resolv.conf "$D/etc/resolv.conf"
  chroot "$D" sh -c "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && $1 && apt-get clean" >> "$B/deb-apt.log" 2>&1 || { tail -20 "$B/deb-apt.log"; exit 1; }
  umount "$D/proc"; mounted=""
  rm -rf "$D"/var/lib/apt/lists/*
}
deps() {
  # apt-get satisfy takes a Depends-style string; Recommends as apt's
  # default would install them (the .deb recommends a pinentry).
  chroot_apt "apt-get satisfy -y -qq --no-install-recommends '$(dpkg-deb -f "$DEB" Depends)' && apt-get satisfy -y -qq --no-install-recommends '$(dpkg-deb -f "$DEB" Recommends)'"
}

# The Debian kernel's modules where the root's kmod looks for them
# (/lib/modules/$(uname -r)), hard links into build/e2e/kernel, indexed by
# the root's own depmod: systemd-modules-load and udev load uhid and
# hid-generic from there.
link_modules() {
  rm -rf "$D/lib/modules"; mkdir -p "$D/lib/modules"
  cp -al "$B/kernel/lib/modules/$kver" "$D/lib/modules/$kver"
  chroot "$D" depmod -a "$kver"
}

if [ -f "$D/.complete" ]; then
  echo "deb-root: the .deb's dependencies or the kernel changed; updating the cached root"
  rm -f "$D/.complete"; deps; link_modules; echo "$want" > "$D/.complete"; exit 0
fi

# The mirror apt uses on this machine (deb822 or one-line sources).
mirror=${E2E_MIRROR:-$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true) |
  grep -Eo 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
secmirror=${mirror%/debian*}/debian-security
echo "deb-root: debootstrap --variant=minbase $SUITE from $mirror, then systemd and the .deb's dependencies (a few minutes, once)"
rm -rf "$D"; : > "$B/deb-apt.log"
debootstrap --variant=minbase "$SUITE" "$D" "$mirror" > "$B/deb-debootstrap.log" 2>&1 || { tail -20 "$B/deb-debootstrap.log"; exit 1; }
cat > "$D/etc/apt/sources.list" <<SRC
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb $secmirror $SUITE-security main
SRC
# A system as a desktop has it, minus the desktop: systemd as PID 1, udev,
# logind and the user session bus (dbus-user-session), kmod for
# modules-load, tpm-udev (the tss group and the /dev/tpmrm0 rule), and
# libfido2's command-line tools as the client.
chroot_apt "apt-get install -y -qq --no-install-recommends systemd systemd-sysv udev dbus dbus-user-session libpam-systemd kmod tpm-udev fido2-tools procps"
deps

link_modules

# Known before the first boot, so systemd's first-boot setup does not run.
chroot "$D" systemd-machine-id-setup >/dev/null
echo deb-e2e > "$D/etc/hostname"
echo "127.0.1.1 deb-e2e" >> "$D/etc/hosts"
# The user who logs in (on tty1, autologin: a seat0 session, so udev's
# uaccess gives them the key's hidraw node, as on a desktop). Groups
# tpm-u2f and tss come after the install, as the postinst asks.
chroot "$D" useradd -m -u 1000 -s /bin/bash alice
# No login prompt until the test asks for one (getty@tty1 with autologin,
# started after dpkg -i): the guest's test unit drives the session.
rm -f "$D/etc/systemd/system/getty.target.wants/getty@tty1.service"
mkdir -p "$D/etc/systemd/system/getty@tty1.service.d"
cat > "$D/etc/systemd/system/getty@tty1.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin alice --noclear %I $TERM
UNIT
rm -rf "$D"/usr/share/doc "$D"/usr/share/man "$D"/usr/share/locale
echo "$want" > "$D/.complete"
du -sh "$D"
