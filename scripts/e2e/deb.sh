#!/usr/bin/env bash
# make e2e-deb: the .deb from `make deb` installed, used and removed on a
# Debian bookworm booted with systemd as PID 1 in QEMU (-accel tcg), with
# swtpm as its /dev/tpmrm0. The root (scripts/e2e/deb-root.sh) is built once
# into build/e2e/deb-root and shared read-only over 9p; a busybox initramfs
# puts an overlayfs on a tmpfs over it for the guest's writes, adds the test
# files and switch_roots to systemd. The guest's e2e-deb.service runs
# scripts/e2e/guest-deb.sh, which prints one "E2E RESULT" line per test on
# the serial console; this script reads them with a hard timeout and fails
# on any FAIL or a missing "E2E DONE". QEMU's exit code says nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
B=$ROOT/build/e2e
. scripts/e2e/host-lib.sh
TIMEOUT=${E2E_TIMEOUT:-600}
mkdir -p "$B"

need=(qemu-system-x86 busybox-static swtpm swtpm-tools cpio debootstrap)
need_debs e2e-deb "${need[@]}"

# The Debian kernel (host-lib.sh), shared with make e2e.
debian_kernel "$B"

# The package under test: make deb's newest .deb (the Makefile target
# builds it first).
DEB=$(ls -t build/tpm-u2f_*.deb 2>/dev/null | head -1)
[ -n "$DEB" ] || { echo "e2e-deb: no build/tpm-u2f_*.deb: run make deb" >&2; exit 1; }
scripts/e2e/deb-root.sh "$DEB"

# The initramfs: busybox, the 9p and overlay modules, and the payload laid
# over the root (the .deb, the test unit and script, the emulated session).
R=$B/deb-initramfs
rm -rf "$R"; mkdir -p "$R"/{bin,lib/modules} "$R/payload/e2e" "$R/payload/usr/local/bin"
cp /bin/busybox "$R/bin/busybox"
copy_modules "$R/lib/modules" virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay
cp scripts/e2e/deb-init.sh "$R/init"; chmod +x "$R/init"
P=$R/payload
cp "$DEB" "$P/e2e/"
# The same package with a higher version, for the upgrade step.
UPVER="$(dpkg-deb -f "$DEB" Version)+e2e1"
rm -rf "$B/deb-upgrade"; mkdir -p "$B/deb-upgrade"
make -s deb PKG_VERSION="$UPVER" PKG_OUT="$B/deb-upgrade" >/dev/null
mkdir -p "$P/e2e/upgrade" && cp "$B"/deb-upgrade/tpm-u2f_*.deb "$P/e2e/upgrade/"
cp scripts/e2e/guest-deb.sh "$P/e2e/tests.sh"
# The notification server that clicks Allow (a user unit in the guest).
CGO_ENABLED=0 go build -o "$P/usr/local/bin/notifyd" ./scripts/e2e/notifyd
mkdir -p "$P/etc/systemd/system/multi-user.target.wants" "$P/etc/systemd/user/default.target.wants"
# The test itself, once the system is up; its output goes to the serial
# console the host reads.
cat > "$P/etc/systemd/system/e2e-deb.service" <<'UNIT'
[Unit]
Description=tpm-u2f .deb end-to-end test
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh /e2e/tests.sh
ExecStopPost=/bin/sh -c 'sync; echo o > /proc/sysrq-trigger'
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
UNIT
ln -s ../e2e-deb.service "$P/etc/systemd/system/multi-user.target.wants/e2e-deb.service"
# A graphical session as desktops start one: their session manager's user
# unit BindsTo= and is Before= graphical-session.target, which pulls in
# what is WantedBy=graphical-session.target (tpm-u2f.service). Started from
# default.target when alice's user manager comes up.
cat > "$P/etc/systemd/user/e2e-session.service" <<'UNIT'
[Unit]
Description=Emulated desktop session manager (e2e)
BindsTo=graphical-session.target
Before=graphical-session.target
Wants=e2e-notifyd.service
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=default.target
UNIT
ln -s ../e2e-session.service "$P/etc/systemd/user/default.target.wants/e2e-session.service"
cat > "$P/etc/systemd/user/e2e-notifyd.service" <<'UNIT'
[Unit]
Description=Notification server that clicks Allow (e2e)
PartOf=graphical-session.target
After=dbus.socket
[Service]
Environment=DBUS_SESSION_BUS_ADDRESS=unix:path=%t/bus
ExecStart=/usr/local/bin/notifyd
StandardOutput=append:/tmp/notifyd.log
StandardError=append:/tmp/notifyd.log
UNIT
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 > "$B/deb-initramfs.cpio.gz")

# swtpm as the guest's TPM, fresh each run.
T=$B/deb-tpm; rm -rf "$T"; mkdir -p "$T"
swtpm socket --tpm2 --tpmstate dir="$T" --ctrl type=unixio,path="$T/ctrl.sock" --daemon --pid file="$T/pid"
trap '[ -f "$T/pid" ] && kill "$(cat "$T/pid")" 2>/dev/null; true' EXIT

LOG=$B/deb-serial.log
rm -f "$LOG"
start=$(date +%s)
# systemd.show_status=error: the boot's failures on the console, not every
# unit; systemd.getty_auto=0: no serial login prompt in the log.
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m 1536 -smp 2 \
  -kernel "$VMLINUZ" -initrd "$B/deb-initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 loglevel=3 systemd.show_status=error systemd.getty_auto=0" \
  -virtfs local,path="$B/deb-root",mount_tag=debroot,security_model=none,readonly=on \
  -chardev socket,id=chrtpm,path="$T/ctrl.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
  -display none -monitor none -serial file:"$LOG" -no-reboot || true
echo "e2e-deb: guest ran $(( $(date +%s) - start )) s; serial log: $LOG"

grep -aE "^E2E (BOOTED|RESULT)" "$LOG" || true
pass=$(grep -ac "^E2E RESULT .* PASS" "$LOG" || true)
fail=$(grep -ac "^E2E RESULT .* FAIL" "$LOG" || true)
if ! grep -aq "^E2E DONE" "$LOG"; then
  echo "e2e-deb: the guest did not finish (timeout ${TIMEOUT}s); last lines:"; tail -30 "$LOG"; fail=$((fail+1))
fi
[ "$fail" -gt 0 ] && { echo "--- serial log tail"; tail -40 "$LOG"; }
echo "e2e-deb: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
