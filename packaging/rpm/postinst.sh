#!/bin/sh
# tpm-u2f postinst for the .rpm (1 on install, 2 on upgrade); the .deb has
# its own (packaging/deb/postinst).
set -e

first_install=
[ "$1" = 1 ] && first_install=1

# /dev/uhid belongs to this group (70-tpm-u2f.rules); the TPM's is tss,
# from tpm-udev (Debian) or tpm2-tss (Fedora). %pre makes it before the
# rule lands; this is for a group deleted since.
if ! getent group tpm-u2f >/dev/null; then
	groupadd -r tpm-u2f
fi

# The user unit, enabled for every user by the preset on first install
# only, as Fedora's %systemd_user_post does, so that an upgrade keeps
# the admin's `systemctl --global disable`.
if [ -n "$first_install" ] && command -v systemctl >/dev/null; then
	systemctl --global preset tpm-u2f.service >/dev/null 2>&1 || true
fi

if command -v udevadm >/dev/null && [ -d /run/udev ]; then
	udevadm control --reload >/dev/null 2>&1 || true
	udevadm trigger --subsystem-match=misc --sysname-match=uhid >/dev/null 2>&1 || true
fi
modprobe uhid >/dev/null 2>&1 || true

# The user managers running now learn of the unit; on an upgrade the key
# comes back from the new binary in each running graphical session where
# the unit is enabled, as the .deb's postinst does. A first install
# starts nothing: the groups the user is added to take effect at the
# next login.
if [ -d /run/systemd/system ]; then
	for uid in $(systemctl --no-legend --quiet list-units 'user@*.service' 2>/dev/null | sed -n 's/.*user@\([0-9][0-9]*\)\.service.*/\1/p'); do
		systemctl --user --machine="$uid@" daemon-reload >/dev/null 2>&1 || continue
		if [ -z "$first_install" ] && systemctl --user --machine="$uid@" --quiet is-active graphical-session.target 2>/dev/null &&
			[ "$(systemctl --user --machine="$uid@" is-enabled tpm-u2f.service 2>/dev/null)" = enabled ]; then
			systemctl --user --machine="$uid@" restart tpm-u2f.service >/dev/null 2>&1 || true
		fi
	done
fi

if [ -n "$first_install" ]; then
	echo "tpm-u2f: add each user to the groups tpm-u2f and tss (sudo usermod -aG tpm-u2f,tss USER),"
	echo "tpm-u2f: log in again; the key starts with the session (systemctl --user enable --now tpm-u2f)."
fi
exit 0
