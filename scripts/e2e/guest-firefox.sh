# Sourced by tests.sh in the e2e guest after guest-browser.sh (e2e.browser=1)
# or alone (e2e.only=firefox): Firefox ESR from the same browser root, on
# an Xvfb display, registers and signs in on the go-webauthn relying
# party's page (scripts/e2e/rp) through its own HID stack (authenticator-rs
# on hidraw): a non-discoverable credential and a passkey with the PIN.
# The relying party's verdicts become browser-firefox-* results; presence
# comes through the D-Bus prompt (notifyd clicks Allow).
t0=$(cut -d' ' -f1 /proc/uptime)
. /e2e/guest-browser-lib.sh
browser_setup
check browser-firefox-version sh -c "chroot $BR /usr/bin/firefox-esr --version"
# A fresh key, and its PIN set before, the way a user sets up a new key
# (libfido2's fido2-token -S; Firefox can set one in about:webauthn, but
# not while a site waits: it asks for an existing PIN in a dialog).
# e2e.firefox_nopin=1 (E2E_FIREFOX_NOPIN=1): a key without a PIN instead.
FF_PIN=${FF_PIN:-314159}
NOPIN=0; grep -q "e2e.firefox_nopin=1" /proc/cmdline && NOPIN=1
browser_daemon /tmp/state-firefox
[ $NOPIN = 1 ] || check browser-firefox-pin-set python3 /e2e/pinpty.py "$FF_PIN" fido2-token -S /dev/hidraw0
browser_rp /tmp/rp-firefox.log
browser_xvfb
# A fresh profile: no first-run pages, telemetry, updates or background
# connections (nothing to reach in the guest, and each costs time under
# TCG); software rendering; one content process. Direct attestation
# without Firefox's consent doorhanger ("localhost wants extended
# information about your security key", Allow/Block), which a user answers
# after each registration: Firefox 153's pref for that skips it (the
# doorhanger is a popup window that Xvfb without a compositor draws black,
# nothing xdotool can aim at). The relying party then verifies the key's
# own attestation statement, as with Chromium.
P=$BR/tmp/ff
mkdir -p $P
cat > $P/user.js <<'PREFS'
user_pref("security.webauthn.always_allow_direct_attestation", true);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("startup.homepage_welcome_url", "");
user_pref("startup.homepage_welcome_url.additional", "");
user_pref("browser.startup.firstrunSkipsHomepage", true);
user_pref("trailhead.firstrun.didSeeAboutWelcome", true);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.policy.firstRunURL", "");
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.unified", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.enabled", false);
user_pref("app.update.auto", false);
user_pref("app.normandy.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("extensions.systemAddon.update.enabled", false);
user_pref("browser.discovery.enabled", false);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.newtabpage.activity-stream.feeds.system.topstories", false);
user_pref("browser.region.update.enabled", false);
user_pref("browser.search.update", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.safebrowsing.provider.google4.updateURL", "");
user_pref("browser.safebrowsing.provider.mozilla.updateURL", "");
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.dns.disableIPv6", true);
user_pref("services.settings.server", "http://127.0.0.1:9/");
user_pref("browser.sessionstore.resume_from_crash", false);
user_pref("browser.tabs.warnOnClose", false);
user_pref("browser.uitour.enabled", false);
user_pref("browser.laterrun.enabled", false);
user_pref("gfx.webrender.software", true);
user_pref("layers.acceleration.disabled", true);
user_pref("dom.ipc.processCount", 1);
user_pref("fission.autostart", false);
PREFS
FLOG=${OUT:-/tmp}/firefox.log
# As root in a chroot the sandboxes (user and PID namespaces, seccomp)
# are not what this test is about: off, like Chromium's --no-sandbox.
( cd /tmp && chroot $BR /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin DISPLAY=:99 \
    DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/bus/session-bus NO_AT_BRIDGE=1 \
    MOZ_DISABLE_CONTENT_SANDBOX=1 MOZ_DISABLE_GMP_SANDBOX=1 MOZ_DISABLE_RDD_SANDBOX=1 \
    MOZ_DISABLE_SOCKET_PROCESS_SANDBOX=1 MOZ_DISABLE_UTILITY_SANDBOX=1 MOZ_DISABLE_GPU_SANDBOX=1 \
    MOZ_CRASHREPORTER_DISABLE=1 MOZ_LOG=webauthn_service:4 RUST_LOG=authenticator=debug \
    /usr/bin/firefox-esr --profile /tmp/ff --no-remote --new-instance http://localhost:8443/ >> $FLOG 2>&1 ) &
FIREFOX=$!
stop_firefox() { for p in $(ps -o pid,args | awk '/[f]irefox-esr/{print $1}'); do kill -9 $p 2>/dev/null; done; }
# Firefox refuses WebAuthn to a document that does not have the focus
# (NotAllowedError). Without a window manager, Firefox focuses its window
# when it maps it; should anything else have the focus, xdotool gives it
# back (and the page waits for document.hasFocus()). Firefox asks for the PIN in a
# dialog in the tab, the focus in its PIN field: xdotool types the PIN and
# Return, every 15 s while a passkey step waits (a PIN typed into the page
# itself does nothing).
answer_firefox() {
  n=0
  while ! grep -q "^RP DONE" /tmp/rp-firefox.log && [ $n -lt 60 ]; do
    sleep 5
    w=$(xdo search --onlyvisible --name "relying party" | head -1)
    [ -n "$w" ] && [ "$(xdo getwindowfocus)" != "$w" ] && { echo "focus: firefox window $w"; xdo windowfocus "$w"; }
    if [ $NOPIN = 0 ] && grep -q "create() for bob\|get() for bob" /tmp/rp-firefox.log; then
      n=$((n+1))
      [ $((n % 3)) = 0 ] || continue
      echo "pin-answer: attempt $((n / 3))" | tee -a /tmp/ff-answer.log
      xdo type --delay 80 "$FF_PIN"; xdo key Return
    fi
  done
}
answer_firefox &
ANSWER=$!
browser_wait firefox $FIREFOX
stop_firefox
browser_results browser-firefox Firefox $FLOG
# The passkey was made with the PIN Firefox asked for: its flags say UV.
# On a key without a PIN, Firefox makes it with presence alone (no UV).
case "$NOPIN $(grep "^RP RESULT register-passkey PASS" /tmp/rp-firefox.log)" in
  "0 "*UV=true*) result browser-firefox-passkey-pin PASS "after $(cat /tmp/ff-answer.log 2>/dev/null | wc -l) PIN answer(s)" ;;
  0*) result browser-firefox-passkey-pin FAIL "no passkey with UV" ;;
  "1 "*UV=false*) result browser-firefox-passkey-nopin PASS "made without a PIN" ;;
  *) result browser-firefox-passkey-nopin FAIL "no passkey without UV" ;;
esac
kill $ANSWER 2>/dev/null
browser_xvfb_stop
kill -TERM $DAEMON; wait $DAEMON 2>/dev/null
