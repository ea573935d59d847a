# Sourced by guest-browser.sh (Chromium) and guest-firefox.sh (Firefox ESR)
# in the e2e guest: what both browsers need around them. The browser root
# (scripts/e2e/browser-root.sh) comes read-only over 9p (tag "browser"); a
# fresh tpm-u2f daemon with the desktop prompt (--presence dbus, notifyd
# clicks Allow); the relying party scripts/e2e/rp (go-webauthn) on
# http://localhost:8443; an Xvfb display; and the relying party's verdicts
# turned into E2E RESULT lines. Uses result/check from tests.sh.
BR=/browser
BROWSER_WAIT=${BROWSER_WAIT:-600}

# browser_setup: once per boot, the 9p root and what a chroot into it
# needs, the session bus with notifyd, and the "out" share.
browser_setup() {
  [ -n "${BROWSER_READY:-}" ] && return 0
  BROWSER_READY=1
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
    insmod /lib/modules/$m.ko 2>/tmp/insmod.err || { grep -q "File exists" /tmp/insmod.err || result "insmod-$m" FAIL "$(cat /tmp/insmod.err)"; }
  done
  mkdir -p $BR
  check browser-9p-mount mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 browser $BR
  # The shared root is read-only: the guest's /dev, /proc, /sys, and fresh
  # tmpfs for everything the browsers write.
  mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
  mount --rbind /dev $BR/dev
  mount --bind /proc $BR/proc
  mount --bind /sys $BR/sys
  mount -t tmpfs tmpfs $BR/tmp
  mount -t tmpfs tmpfs $BR/run
  mount -t tmpfs tmpfs $BR/root
  # the session bus socket, where the daemon and the notification server are.
  mkdir -p $BR/tmp/bus && mount --bind /tmp $BR/tmp/bus
  # The session bus and notifyd from the dbus test, or started here.
  export DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/session-bus
  if [ ! -S /tmp/session-bus ]; then
    mkdir -p /etc; [ -f /etc/passwd ] || { printf 'root:x:0:0:root:/root:/bin/sh\n' > /etc/passwd; printf 'root:x:0:\n' > /etc/group; }
    head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/machine-id
    dbus-daemon --config-file=/usr/share/dbus-1/session.conf --address=$DBUS_SESSION_BUS_ADDRESS --fork --nopidfile
    sleep 0.3; notifyd > /tmp/notifyd.log 2>&1 & sleep 0.3
  fi
  # A writable share "out" (run.sh: build/e2e/browser-out) takes logs and
  # screenshots (E2E_BROWSER_OUT=1).
  OUT=
  if grep -q "e2e.browser_out=1" /proc/cmdline; then mkdir -p /out && mount -t 9p -o trans=virtio,version=9p2000.L out /out && OUT=/out; fi
}

# browser_daemon STATE: a fresh key (no PIN, no credentials) in state
# directory STATE with the desktop prompt, instead of the daemon before.
browser_daemon() {
  [ -n "${DAEMON:-}" ] && kill -0 $DAEMON 2>/dev/null && { kill -TERM $DAEMON; wait $DAEMON 2>/dev/null; }
  i=0; while [ -e /dev/hidraw0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  /bin/tpm-u2f run --tpm /dev/tpmrm0 --transport uhid --presence dbus --log-level debug --state "$1" >> /tmp/daemon.log 2>&1 &
  DAEMON=$!
  i=0; while [ ! -e /dev/hidraw0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  clicks0=$(grep -c "clicked Allow" /tmp/notifyd.log)
}

# browser_rp LOG: the relying party, its output in LOG, which shows on the
# console as it comes, with the daemon's requests.
browser_rp() {
  RPLOG=$1
  /bin/rp -exit > $RPLOG 2>&1 &
  RP=$!
  tail -f $RPLOG &
  TAIL=$!
  tail -n 0 -f /tmp/daemon.log /tmp/notifyd.log &
  TAIL2=$!
  sleep 0.3
}

# browser_xvfb: an X display :99 (1024x768) in the root, for xdotool.
browser_xvfb() {
  chroot $BR /usr/bin/Xvfb :99 -screen 0 1024x768x24 -nolisten tcp > /tmp/xvfb.log 2>&1 &
  XVFB=$!
  i=0; while [ ! -S $BR/tmp/.X11-unix/X99 ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done
}
browser_xvfb_stop() {
  [ -n "${XVFB:-}" ] && { kill $XVFB 2>/dev/null; wait $XVFB 2>/dev/null; }
  XVFB=
  rm -f $BR/tmp/.X11-unix/X99 $BR/tmp/.X99-lock
}
# xdo ARGS: xdotool on the display.
xdo() { chroot $BR env DISPLAY=:99 xdotool "$@" 2>/dev/null; }

# browser_wait NAME PID: until the relying party is done, the browser PID
# gone or BROWSER_WAIT seconds passed; with "out", a screenshot of the X
# display every 15 s (out/NAME-shot-N.xwd).
browser_wait() {
  i=0; while ! grep -q "^RP DONE" $RPLOG && [ $i -lt $BROWSER_WAIT ] && kill -0 $2 2>/dev/null; do
    sleep 1; i=$((i+1))
    if [ -n "$OUT" ] && [ -n "${XVFB:-}" ] && [ $((i % 15)) = 0 ]; then chroot $BR env DISPLAY=:99 xwd -root -silent > $OUT/$1-shot-$i.xwd 2>/dev/null; fi
  done
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "--- $1: ${i} s waiting for the page, $(awk "BEGIN{print $t1-$t0}") s in all"
  kill $RP $TAIL $TAIL2 2>/dev/null
}

# browser_results PREFIX NAME BLOG: the relying party's verdicts as
# PREFIX-<step> results, and PREFIX-dbus-prompt from notifyd's clicks; on a
# failure the logs (BLOG: the browser's, filtered by the caller).
browser_results() {
  for t in register-nondiscoverable login-nondiscoverable register-passkey login-passkey; do
    line=$(grep "^RP RESULT $t " $RPLOG | head -1)
    case "$line" in
      "RP RESULT $t PASS"*) result $1-$t PASS "${line#RP RESULT $t PASS }" ;;
      "RP RESULT $t FAIL"*) result $1-$t FAIL "${line#RP RESULT $t FAIL }" ;;
      *) result $1-$t FAIL "no verdict from the relying party: $(grep "^RP LOG" $RPLOG | tail -1 | cut -c1-160)" ;;
    esac
  done
  clicks=$(( $(grep -c "clicked Allow" /tmp/notifyd.log) - clicks0 ))
  if [ $clicks -gt 0 ]; then result $1-dbus-prompt PASS "notifyd clicked Allow $clicks times for $2"; else result $1-dbus-prompt FAIL "no prompt"; fi
  if [ "$(grep -c "^RP RESULT .* PASS" $RPLOG)" -lt 4 ]; then
    echo "--- relying party log"; cat $RPLOG
    echo "--- $2 log (last 80 lines, without D-Bus noise)"; grep -v "dbus/" $3 | tail -80
    echo "--- kernel: traps and faults"; dmesg | grep -iE "trap|segfault|oom|killed" | tail -20
    echo "--- daemon log (last 20 lines)"; tail -20 /tmp/daemon.log
    echo "--- notifyd log (last 10 lines)"; tail -10 /tmp/notifyd.log
  fi
  [ -n "$OUT" ] && cp $RPLOG /tmp/daemon.log /tmp/notifyd.log $OUT/ 2>/dev/null
  return 0
}
