#!/bin/sh
# tpm-u2f %preun for the .rpm (0 on erase, 1 on upgrade). On erase the
# daemon stops in every running user manager (user@UID.service), as the
# .deb's prerm does: nothing else would stop it, and it would go on from
# a deleted binary with the key still plugged in.
set -e

if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
	for uid in $(systemctl --no-legend --quiet list-units 'user@*.service' 2>/dev/null | sed -n 's/.*user@\([0-9][0-9]*\)\.service.*/\1/p'); do
		systemctl --user --machine="$uid@" stop tpm-u2f.service >/dev/null 2>&1 || true
	done
fi
exit 0
