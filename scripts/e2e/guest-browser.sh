# Sourced by tests.sh in the e2e guest when the kernel command line has
# e2e.browser=1 (E2E_BROWSER=1 make e2e): Chromium, from a debootstrap root
# shared read-only over 9p (tag "browser"), registers and signs in on a page
# served by scripts/e2e/rp (go-webauthn) on http://localhost:8443, a
# non-discoverable credential and a passkey. The relying party's
# verification is the verdict: its "RP RESULT" lines become E2E RESULT
# lines. Presence comes through the D-Bus prompt (notifyd clicks Allow).
# The setup both browsers share is in guest-browser-lib.sh.
t0=$(cut -d' ' -f1 /proc/uptime)
. /e2e/guest-browser-lib.sh
browser_setup
check browser-chromium-version sh -c "chroot $BR /usr/bin/chromium --version"
browser_daemon /tmp/state-browser
browser_rp /tmp/rp.log
# Chromium as root needs --no-sandbox. BROWSER_X=1 (e2e.browser_x=1): the
# ordinary (not headless) browser on an Xvfb display, so that xdotool can
# type into its WebAuthn dialog; otherwise --headless=new, the full
# browser (its WebAuthn request dialog included) without a display.
grep -q "e2e.browser_x=1" /proc/cmdline && BROWSER_X=1
XVFB=
if [ "${BROWSER_X:-0}" = 1 ]; then
  browser_xvfb
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
  while ! grep -q "$1" /tmp/rp.log; do sleep 1; grep -q "^RP DONE" /tmp/rp.log && return; done
  n=0
  while ! grep -q "$2" /tmp/rp.log && [ $n -lt 8 ]; do
    sleep 12; grep -q "$2" /tmp/rp.log && break
    n=$((n+1)); echo "pin-answer: $1 attempt $n"
    xdo mousemove 374 355 click 1 key ctrl+a type --delay 60 "$BROWSER_PIN"
    [ "$3" = 2 ] && xdo mousemove 517 355 click 1 key ctrl+a type --delay 60 "$BROWSER_PIN"
    xdo key Return
    sleep 8
  done
}
if [ -n "$XVFB" ]; then
  ( answer_pin "create() for bob" "register bob: " 2; answer_pin "get() for bob" "login bob: " 1 ) &
  ANSWER=$!
fi
browser_wait chromium $CHROME
stop_chromium
browser_results browser Chromium $CLOG
[ -n "$XVFB" ] && kill $ANSWER 2>/dev/null
browser_xvfb_stop
kill -TERM $DAEMON; wait $DAEMON 2>/dev/null
