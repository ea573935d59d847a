#!/usr/bin/env bash
# make e2e: builds (and caches in build/e2e) a QEMU guest from Debian packages
# only — the Debian kernel with its uhid/hid modules, a busybox initramfs,
# swtpm as the guest's TPM — runs the freshly built tpm-u2f in it against
# /dev/tpmrm0 and /dev/uhid, and drives it with libfido2's tools through the
# /dev/hidraw0 the kernel creates. QEMU's exit code says nothing: the guest
# prints one "E2E RESULT" line per test on its serial console, and this
# script reads them, with a hard timeout, and fails on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
B=$ROOT/build/e2e
. scripts/e2e/host-lib.sh
# E2E_BROWSER=1 adds the browser tests, Chromium (scripts/e2e/guest-browser.sh)
# and Firefox ESR (scripts/e2e/guest-firefox.sh): a browser root over 9p,
# more memory, and a longer default timeout. E2E_ONLY=browser runs those
# alone, E2E_ONLY=chromium or E2E_ONLY=firefox one browser (while working
# on them).
BROWSER=${E2E_BROWSER:-0}
case "${E2E_ONLY:-}" in browser|chromium|firefox) BROWSER=1 ;; esac
if [ "$BROWSER" = 1 ]; then TIMEOUT=${E2E_TIMEOUT:-1200}; else TIMEOUT=${E2E_TIMEOUT:-300}; fi
mkdir -p "$B"

need=(qemu-system-x86 busybox-static fido2-tools swtpm swtpm-tools cpio openssh-client openssh-server python3-fido2 dbus-daemon)
need_debs e2e "${need[@]}"

# The Debian kernel, extracted once.
debian_kernel "$B"

# The initramfs, rebuilt every run (the binaries under test change).
go build -o "$B/tpm-u2f" ./cmd/tpm-u2f
go test -c -o "$B/uhid.test" ./uhid
go build -o "$B/notifyd" ./scripts/e2e/notifyd
go build -o "$B/fprintd" ./scripts/e2e/fprintd
R=$B/root
rm -rf "$R"; mkdir -p "$R"/{bin,lib,lib64,lib/modules,tmp}
cp /bin/busybox "$R/bin/busybox"
cp "$B/notifyd" "$B/fprintd" /usr/bin/dbus-daemon "$R/bin/"
mkdir -p "$R/usr/share/dbus-1" && cp /usr/share/dbus-1/session.conf "$R/usr/share/dbus-1/"
cp "$B/tpm-u2f" "$B/uhid.test" /usr/bin/fido2-token /usr/bin/fido2-cred /usr/bin/fido2-assert "$R/bin/"
# OpenSSH at its own paths: sshd re-executes itself by absolute path, and
# ssh-keygen finds ssh-sk-helper (which links libfido2) where Debian puts it.
ssh_bins=(/usr/bin/ssh /usr/bin/ssh-keygen /usr/sbin/sshd /usr/lib/openssh/ssh-sk-helper)
for f in "${ssh_bins[@]}"; do mkdir -p "$R$(dirname "$f")"; cp "$f" "$R$f"; done
for bin in /usr/bin/dbus-daemon "$B/tpm-u2f" "$B/uhid.test" /usr/bin/fido2-token /usr/bin/fido2-cred /usr/bin/fido2-assert "${ssh_bins[@]}"; do
  for lib in $(ldd "$bin" | awk '/=>/{print $3} /ld-linux/{print $1}'); do
    [ -f "$lib" ] || continue
    case "$lib" in */ld-linux*) cp -n "$lib" "$R/lib64/" ;; *) cp -n "$lib" "$R/lib/" ;; esac
  done
done
# Python with python-fido2 and cryptography, at their Debian paths, without
# the parts nobody imports here.
mkdir -p "$R/usr/lib/python3/dist-packages" "$R/interop"
cp /usr/bin/python3.11 "$R/usr/bin/python3"
tar -C /usr/lib --exclude='python3.11/test' --exclude='python3.11/idlelib' --exclude='python3.11/tkinter' \
  --exclude='python3.11/ensurepip' --exclude='python3.11/lib2to3' --exclude='*/__pycache__' -cf - python3.11 | tar -C "$R/usr/lib" -xf -
for p in fido2 cryptography six.py _cffi_backend.cpython-311-x86_64-linux-gnu.so; do
  cp -r /usr/lib/python3/dist-packages/$p "$R/usr/lib/python3/dist-packages/"
done
cp interop/python/u2f_udp.py "$R/interop/"
mkdir -p "$R/e2e" && cp scripts/e2e/pinpty.py scripts/e2e/pin_hidraw.py "$R/e2e/"
# cryptography loads OpenSSL's legacy provider from libcrypto's module dir.
mkdir -p "$R/usr/lib/x86_64-linux-gnu"
cp -r /usr/lib/x86_64-linux-gnu/ossl-modules "$R/usr/lib/x86_64-linux-gnu/"
for so in /usr/bin/python3.11 $(find /usr/lib/python3.11/lib-dynload /usr/lib/python3/dist-packages/cryptography /usr/lib/python3/dist-packages/_cffi_backend* -name '*.so'); do
  for lib in $(ldd "$so" 2>/dev/null | awk '/=>/{print $3}'); do [ -f "$lib" ] && cp -n "$lib" "$R/lib/"; done
done
copy_modules "$R/lib/modules" hid uhid hid-generic
cp scripts/e2e/guest-browser.sh scripts/e2e/guest-browser-lib.sh scripts/e2e/guest-firefox.sh "$R/e2e/"
qemu_browser=()
append=""
if [ "$BROWSER" = 1 ]; then
  scripts/e2e/browser-root.sh
  # The relying party, static: it runs in the initramfs, outside the root.
  CGO_ENABLED=0 go build -o "$R/bin/rp" ./scripts/e2e/rp
  # 9p over virtio-pci, from the same kernel package.
  copy_modules "$R/lib/modules" virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p
  qemu_browser=(-m 3072 -smp 2 -virtfs local,path="$B/browser-root",mount_tag=browser,security_model=none,readonly=on)
  append=" e2e.browser=1"
  [ -n "${E2E_ONLY:-}" ] && append="$append e2e.only=$E2E_ONLY"
  # Chromium on Xvfb, where xdotool answers its PIN sheets (a passkey on a
  # security key needs a PIN in Chromium); E2E_BROWSER_HEADLESS=1:
  # --headless=new instead (the passkey tests then fail at that sheet).
  # Firefox runs on Xvfb either way.
  [ "${E2E_BROWSER_HEADLESS:-0}" = 1 ] || append="$append e2e.browser_x=1"
  # E2E_FIREFOX_NOPIN=1: Firefox's passkey on a key without a PIN.
  [ "${E2E_FIREFOX_NOPIN:-0}" = 1 ] && append="$append e2e.firefox_nopin=1"
  # E2E_BROWSER_OUT=1: logs and screenshots to build/e2e/browser-out.
  if [ "${E2E_BROWSER_OUT:-0}" = 1 ]; then
    rm -rf "$B/browser-out"; mkdir -p "$B/browser-out"
    qemu_browser+=(-virtfs local,path="$B/browser-out",mount_tag=out,security_model=none)
    append="$append e2e.browser_out=1"
  fi
fi
cp scripts/e2e/guest-init.sh "$R/init"; chmod +x "$R/init"
cp scripts/e2e/guest-tests.sh "$R/tests.sh"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 > "$B/initramfs.cpio.gz")

# swtpm as the guest's TPM, fresh each run.
T=$B/tpm; rm -rf "$T"; mkdir -p "$T"
swtpm socket --tpm2 --tpmstate dir="$T" --ctrl type=unixio,path="$T/ctrl.sock" --daemon --pid file="$T/pid"
trap '[ -f "$T/pid" ] && kill "$(cat "$T/pid")" 2>/dev/null; true' EXIT

LOG=$B/serial.log
rm -f "$LOG"
start=$(date +%s)
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 \
  -kernel "$VMLINUZ" -initrd "$B/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3$append" "${qemu_browser[@]}" \
  -chardev socket,id=chrtpm,path="$T/ctrl.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
  -display none -monitor none -serial file:"$LOG" -no-reboot || true
echo "e2e: guest ran $(( $(date +%s) - start )) s; serial log: $LOG"

grep -E "^E2E (BOOTED|RESULT)" "$LOG" || true
pass=$(grep -c "^E2E RESULT .* PASS" "$LOG" || true)
fail=$(grep -c "^E2E RESULT .* FAIL" "$LOG" || true)
# XFAIL: a known, reported tpm-u2f bug (guest-tests.sh's KNOWN_BUGS);
# XPASS: such a test now passes (take it off that list).
xfail=$(grep -c "^E2E RESULT .* XFAIL" "$LOG" || true)
xpass=$(grep -c "^E2E RESULT .* XPASS" "$LOG" || true)
if ! grep -q "^E2E DONE" "$LOG"; then
  echo "e2e: the guest did not finish (timeout ${TIMEOUT}s); last lines:"; tail -20 "$LOG"; fail=$((fail+1))
fi
[ "$fail" -gt 0 ] && { echo "--- serial log tail"; tail -25 "$LOG"; }
echo "e2e: $pass passed, $fail failed, $xfail known failures (XFAIL), $xpass known failures now passing (XPASS)"
[ "$xpass" -gt 0 ] && echo "e2e: take the XPASS tests off KNOWN_BUGS in scripts/e2e/guest-tests.sh"
[ "$fail" -eq 0 ]
