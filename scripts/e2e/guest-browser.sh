# Sourced by tests.sh in the e2e guest when the kernel command line has
# e2e.browser=1 (E2E_BROWSER=1 make e2e): Chromium, from a debootstrap root
# shared read-only over 9p (tag "browser"), registers and signs in on a page
# served by scripts/e2e/rp (go-webauthn) on http://localhost:8443, a
# non-discoverable credential and a passkey. The relying party's
# verification is the verdict: its "RP RESULT" lines become E2E RESULT
# lines. Presence comes through the D-Bus prompt (notifyd clicks Allow).
# Uses result/check from tests.sh.
BROWSER_WAIT=${BROWSER_WAIT:-600}
t0=$(cut -d' ' -f1 /proc/uptime)
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
  insmod /lib/modules/$m.ko 2>/tmp/insmod.err || { grep -q "File exists" /tmp/insmod.err || result "insmod-$m" FAIL "$(cat /tmp/insmod.err)"; }
done
BR=/browser
XVFB=
mkdir -p $BR
check browser-9p-mount mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 browser $BR
# The shared root is read-only: the guest's /dev, /proc, /sys, and fresh
# tmpfs for everything Chromium writes.
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
mount --rbind /dev $BR/dev
mount --bind /proc $BR/proc
mount --bind /sys $BR/sys
mount -t tmpfs tmpfs $BR/tmp
mount -t tmpfs tmpfs $BR/run
mount -t tmpfs tmpfs $BR/root
# the session bus socket, where the daemon and the notification server are.
mkdir -p $BR/tmp/bus && mount --bind /tmp $BR/tmp/bus
check browser-chromium-version sh -c "chroot $BR /usr/bin/chromium --version"

# A fresh key (no PIN, no credentials) with the desktop prompt: the
# session bus and notifyd from the dbus test, or started here.
export DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/session-bus
if [ ! -S /tmp/session-bus ]; then
  mkdir -p /etc; [ -f /etc/passwd ] || { printf 'root:x:0:0:root:/root:/bin/sh\n' > /etc/passwd; printf 'root:x:0:\n' > /etc/group; }
  mkdir -p /etc && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/machine-id
  dbus-daemon --config-file=/usr/share/dbus-1/session.conf --address=$DBUS_SESSION_BUS_ADDRESS --fork --nopidfile
  sleep 0.3; notifyd > /tmp/notifyd.log 2>&1 & sleep 0.3
fi
[ -n "$DAEMON" ] && kill -0 $DAEMON 2>/dev/null && { kill -TERM $DAEMON; wait $DAEMON 2>/dev/null; }
i=0; while [ -e /dev/hidraw0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
/bin/tpm-u2f run --tpm /dev/tpmrm0 --transport uhid --presence dbus --log-level debug --state /tmp/state-browser >> /tmp/daemon.log 2>&1 &
DAEMON=$!
i=0; while [ ! -e /dev/hidraw0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
clicks0=$(grep -c "clicked Allow" /tmp/notifyd.log)

OUT=
if grep -q "e2e.browser_out=1" /proc/cmdline; then mkdir -p /out && mount -t 9p -o trans=virtio,version=9p2000.L out /out && OUT=/out; fi
/bin/rp -exit > /tmp/rp.log 2>&1 &
RP=$!
# Progress on the console as it happens: the relying party's lines and
# the daemon's requests.
tail -f /tmp/rp.log &
TAIL=$!
tail -n 0 -f /tmp/daemon.log /tmp/notifyd.log &
TAIL2=$!
sleep 0.3
# Chromium as root needs --no-sandbox. BROWSER_X=1 (e2e.browser_x=1): the
# ordinary (not headless) browser on an Xvfb display, so that xdotool can
# type into its WebAuthn dialog; otherwise --headless=new, the full
# browser (its WebAuthn request dialog included) without a display.
grep -q "e2e.browser_x=1" /proc/cmdline && BROWSER_X=1
if [ "${BROWSER_X:-0}" = 1 ]; then
  chroot $BR /usr/bin/Xvfb :99 -screen 0 1024x768x24 -nolisten tcp > /tmp/xvfb.log 2>&1 &
  XVFB=$!
  i=0; while [ ! -S $BR/tmp/.X11-unix/X99 ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done
  mode="--ozone-platform=x11"
else
  mode="--headless=new"
fi
CLOG=${OUT:-/tmp}/chromium.log
start_chromium() {
( cd /tmp && chroot $BR /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin DISPLAY=:99 DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/bus/session-bus \
    /usr/bin/chromium $mode --no-sandbox --disable-gpu --no-first-run --no-default-browser-check \
    --user-data-dir=/tmp/chrome --disable-dev-shm-usage --disable-background-networking --disable-component-update \
    --disable-sync --disable-extensions --disable-default-apps --no-pings --disable-breakpad \
    --enable-logging=stderr --v=0 --vmodule='device_event_log*=1' \
    http://localhost:8443/ >> $CLOG 2>&1 ) &
CHROME=$!
}
stop_chromium() { for p in $(ps -o pid,args | awk '/[c]hromium/{print $1}'); do kill -9 $p 2>/dev/null; done; }
start_chromium
# Now and then the first navigation never reaches the server (Chromium's
# network service dies once under TCG and the load hangs): start again.
i=0; while ! grep -q "page requested" /tmp/rp.log && [ $i -lt 150 ]; do sleep 1; i=$((i+1)); done
if ! grep -q "page requested" /tmp/rp.log; then
  echo "--- no page request after 150 s: Chromium again"; grep -E "crash|ERROR" $CLOG | grep -v dbus/ | tail -5
  stop_chromium; sleep 1; start_chromium
fi
# Chromium makes a passkey on a security key only with a PIN (its "PIN
# required: set up a new PIN for your security key" sheet, even with
# userVerification "discouraged"), and signs in with one only after the
# PIN. On the X display xdotool answers those sheets, at the places
# Chromium 156 draws them on a 1024x768 screen: the PIN field(s), then
# Return. It retries every 20 s until the relying party reports the step.
BROWSER_PIN=${BROWSER_PIN:-271828}
answer_pin() { # $1: the RP LOG line of the waiting step, $2: its end, $3: 2 (new PIN and confirm) or 1
  x() { chroot $BR env DISPLAY=:99 xdotool "$@" 2>/dev/null; }
  while ! grep -q "$1" /tmp/rp.log; do sleep 1; grep -q "^RP DONE" /tmp/rp.log && return; done
  n=0
  while ! grep -q "$2" /tmp/rp.log && [ $n -lt 8 ]; do
    sleep 12; grep -q "$2" /tmp/rp.log && break
    n=$((n+1)); echo "pin-answer: $1 attempt $n"
    x mousemove 374 355 click 1 key ctrl+a type --delay 60 "$BROWSER_PIN"
    [ "$3" = 2 ] && x mousemove 517 355 click 1 key ctrl+a type --delay 60 "$BROWSER_PIN"
    x key Return
    sleep 8
  done
}
if [ -n "$XVFB" ]; then
  ( answer_pin "create() for bob" "register bob: " 2; answer_pin "get() for bob" "login bob: " 1 ) &
  ANSWER=$!
fi
# A writable share "out" (run.sh: build/e2e/browser-out) takes logs and,
# on the X display, a screenshot every 15 s.
i=0; while ! grep -q "^RP DONE" /tmp/rp.log && [ $i -lt $BROWSER_WAIT ] && kill -0 $CHROME 2>/dev/null; do
  sleep 1; i=$((i+1))
  if [ -n "$OUT" ] && [ -n "$XVFB" ] && [ $((i % 15)) = 0 ]; then chroot $BR env DISPLAY=:99 xwd -root -silent > $OUT/shot-$i.xwd 2>/dev/null; fi
done
t1=$(cut -d' ' -f1 /proc/uptime)
echo "--- browser part: ${i} s waiting for the page, $(awk "BEGIN{print $t1-$t0}") s in all"
kill $RP $TAIL $TAIL2 2>/dev/null
stop_chromium
for t in register-nondiscoverable login-nondiscoverable register-passkey login-passkey; do
  line=$(grep "^RP RESULT $t " /tmp/rp.log | head -1)
  case "$line" in
    "RP RESULT $t PASS"*) result browser-$t PASS "${line#RP RESULT $t PASS }" ;;
    "RP RESULT $t FAIL"*) result browser-$t FAIL "${line#RP RESULT $t FAIL }" ;;
    *) result browser-$t FAIL "no verdict from the relying party: $(grep "^RP LOG" /tmp/rp.log | tail -1 | cut -c1-160)" ;;
  esac
done
clicks=$(( $(grep -c "clicked Allow" /tmp/notifyd.log) - clicks0 ))
if [ $clicks -gt 0 ]; then result browser-dbus-prompt PASS "notifyd clicked Allow $clicks times for Chromium"; else result browser-dbus-prompt FAIL "no prompt"; fi
if [ "$(grep -c "^RP RESULT .* PASS" /tmp/rp.log)" -lt 4 ]; then
  echo "--- relying party log"; cat /tmp/rp.log
  echo "--- chromium log (last 80 lines, without D-Bus noise)"; grep -v "dbus/" $CLOG | tail -80
  echo "--- kernel: traps and faults"; dmesg | grep -iE "trap|segfault|oom|killed" | tail -20
  echo "--- daemon log (last 20 lines)"; tail -20 /tmp/daemon.log
  echo "--- notifyd log (last 10 lines)"; tail -10 /tmp/notifyd.log
fi
[ -n "$OUT" ] && cp /tmp/rp.log /tmp/daemon.log /tmp/notifyd.log $OUT/ 2>/dev/null
[ -n "$XVFB" ] && kill $XVFB $ANSWER 2>/dev/null
kill -TERM $DAEMON; wait $DAEMON 2>/dev/null
