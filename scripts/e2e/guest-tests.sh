# Runs inside the e2e guest; prints one "E2E RESULT <test> PASS|FAIL <detail>"
# line per test on the serial console. The host script reads them.
result() { echo "E2E RESULT $1 $2 ${3:-}"; }
check() { name=$1; shift; if "$@" >/tmp/$name.out 2>&1; then result "$name" PASS; else result "$name" FAIL "$(tail -3 /tmp/$name.out | tr "\n" " ")"; echo "--- $name output"; head -40 /tmp/$name.out; fi; }

for m in hid uhid hid-generic; do insmod /lib/modules/$m.ko || result "insmod-$m" FAIL; done
[ -e /dev/uhid ] && result uhid-device PASS || result uhid-device FAIL "no /dev/uhid"
[ -e /dev/tpmrm0 ] && result tpm-device PASS || result tpm-device FAIL "no /dev/tpmrm0"

# The uhid package's real-device test, built on the host.
check uhid-go-test /bin/uhid.test -test.run TestRealDevice -test.v

/bin/tpm-u2f run --tpm /dev/tpmrm0 --transport uhid --presence always --state /tmp/state > /tmp/daemon.log 2>&1 &
DAEMON=$!
i=0; while [ ! -e /dev/hidraw0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ -e /dev/hidraw0 ]; then result hidraw-appears PASS "after ${i}00 ms, uptime $(cut -d' ' -f1 /proc/uptime)"; else result hidraw-appears FAIL; tail -5 /tmp/daemon.log; fi

# The udev rule (contrib/70-tpm-u2f.rules) matches the parent HID device by
# name: check the kernel names it BUS:VENDOR:PRODUCT.N as the rule assumes.
hid=$(basename "$(readlink -f /sys/class/hidraw/hidraw0/device)")
case "$hid" in 0003:15D9:0A37.*) result udev-rule-match PASS "$hid" ;; *) result udev-rule-match FAIL "$hid" ;; esac

check fido2-token-list sh -c 'fido2-token -L | tee /dev/stderr | grep -q "^/dev/hidraw0"'
check fido2-token-info fido2-token -I /dev/hidraw0

b64rand() { head -c 32 /dev/urandom | base64; }
printf '%s\n%s\n%s\n%s\n' "$(b64rand)" example.org alice "$(b64rand)" > /tmp/cred_param
check fido2-cred-make sh -c 'fido2-cred -M -i /tmp/cred_param -o /tmp/cred /dev/hidraw0'
check fido2-cred-verify sh -c 'fido2-cred -V -i /tmp/cred -o /tmp/cred_key'
for n in 1 2; do
  printf '%s\n%s\n%s\n' "$(b64rand)" example.org "$(head -1 /tmp/cred_key)" > /tmp/assert_param
  check fido2-assert-get-$n sh -c 'fido2-assert -G -p -i /tmp/assert_param -o /tmp/assert /dev/hidraw0'
  check fido2-assert-verify-$n sh -c 'tail -n +2 /tmp/cred_key > /tmp/pub.pem && fido2-assert -V -p -i /tmp/assert /tmp/pub.pem es256'
done
# The same credential for another relying party must not work.
printf '%s\n%s\n%s\n' "$(b64rand)" evil.example "$(head -1 /tmp/cred_key)" > /tmp/evil_param
check fido2-assert-other-rp-refused sh -c '! fido2-assert -G -p -i /tmp/evil_param -o /tmp/evil /dev/hidraw0'

# A re-plug (SIGHUP) destroys and re-creates the device; the key keeps working.
kill -HUP $DAEMON
sleep 1
printf '%s\n%s\n%s\n' "$(b64rand)" example.org "$(head -1 /tmp/cred_key)" > /tmp/assert_param
check replug-then-assert sh -c 'i=0; while [ ! -e /dev/hidraw0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; fido2-assert -G -p -i /tmp/assert_param -o /tmp/assert /dev/hidraw0 && fido2-assert -V -p -i /tmp/assert /tmp/pub.pem es256'

# kill -9 in the middle of a request, restart: same credential, counter moved on.
# (libfido2 prints the authenticator data as a CBOR byte string: 2 header bytes,
# then rpIdHash 32, flags 1, counter 4.)
counter() { sed -n 3p "$1" | base64 -d | dd bs=1 skip=35 count=4 2>/dev/null | od -An -tu1 | awk '{print $1*16777216+$2*65536+$3*256+$4}'; }
before=$(counter /tmp/assert)
printf '%s\n%s\n%s\n' "$(b64rand)" example.org "$(head -1 /tmp/cred_key)" > /tmp/assert_param
fido2-assert -G -p -i /tmp/assert_param -o /tmp/assert_killed /dev/hidraw0 >/dev/null 2>&1 &
sleep 0.05; kill -9 $DAEMON; wait $DAEMON 2>/dev/null
i=0; while [ -e /dev/hidraw0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
/bin/tpm-u2f run --tpm /dev/tpmrm0 --transport uhid --presence always --state /tmp/state >> /tmp/daemon.log 2>&1 &
DAEMON=$!
i=0; while [ ! -e /dev/hidraw0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
printf '%s\n%s\n%s\n' "$(b64rand)" example.org "$(head -1 /tmp/cred_key)" > /tmp/assert_param
check restart-after-kill9 sh -c 'fido2-assert -G -p -i /tmp/assert_param -o /tmp/assert /dev/hidraw0 && fido2-assert -V -p -i /tmp/assert /tmp/pub.pem es256'
after=$(counter /tmp/assert)
if [ -n "$after" ] && [ "$after" -gt "$before" ]; then result counter-forward-after-kill9 PASS "$before -> $after"; else result counter-forward-after-kill9 FAIL "$before -> $after"; fi

kill -TERM $DAEMON
i=0; while kill -0 $DAEMON 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
if kill -0 $DAEMON 2>/dev/null; then result daemon-stops FAIL; else result daemon-stops PASS; fi
[ -e /dev/hidraw0 ] && result device-destroyed FAIL "hidraw0 still there" || result device-destroyed PASS
echo "--- daemon log (last 15 lines)"; tail -15 /tmp/daemon.log
