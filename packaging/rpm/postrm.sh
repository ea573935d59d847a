#!/bin/sh
# tpm-u2f postrm for the .rpm (0 on erase, 1 on upgrade). It leaves each user's state (~/.local/state/tpm-u2f)
# and the tpm-u2f group alone: the keys' credentials live in the TPM and
# that state, and a reinstall must find them.
set -e

case "$1" in
0)
	if command -v systemctl >/dev/null; then
		systemctl --global disable tpm-u2f.service >/dev/null 2>&1 || true
	fi
	if command -v udevadm >/dev/null && [ -d /run/udev ]; then
		udevadm control --reload >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
