#!/bin/sh
# tpm-u2f %pre for the .rpm (1 on install, 2 on upgrade), as Fedora makes
# a package's groups: before its files land. udevd may load
# 70-tpm-u2f.rules as soon as it is there and resolves GROUP= then; a
# later `udevadm control --reload` re-reads unchanged rules not at all
# (the .deb's preinst says the same; make e2e-deb saw /dev/uhid stay
# root's when the group came only after the unpack).
if ! getent group tpm-u2f >/dev/null; then
	groupadd -r tpm-u2f || :
fi
exit 0
