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

# python-fido2 through the real hidraw node.
check python-fido2-hidraw sh -c 'python3 /interop/u2f_udp.py hidraw | tee /dev/stderr | grep -q " 0 failed"'

# OpenSSH: an ecdsa-sk key made on the token (application "ssh:"), and a
# login with it to an sshd on the guest's loopback.
mkdir -p /etc/ssh /run/sshd /root/.ssh /var/empty
chmod 700 /root/.ssh
printf 'root:x:0:0:root:/root:/bin/sh\nsshd:x:103:65534::/run/sshd:/bin/false\n' > /etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > /etc/group
ssh-keygen -q -t ed25519 -f /etc/ssh/host_key -N '' >/dev/null 2>&1
cat > /etc/ssh/sshd_config <<CONF
Port 2222
ListenAddress 127.0.0.1
HostKey /etc/ssh/host_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile /root/.ssh/authorized_keys
PidFile /run/sshd.pid
CONF
check ssh-keygen-ecdsa-sk ssh-keygen -t ecdsa-sk -f /root/.ssh/id_ecdsa_sk -N '' -C tpm-u2f-e2e
cp /root/.ssh/id_ecdsa_sk.pub /root/.ssh/authorized_keys 2>/dev/null
/usr/sbin/sshd -f /etc/ssh/sshd_config -E /tmp/sshd.log
sleep 0.5
check ssh-login-with-ecdsa-sk sh -c 'ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i /root/.ssh/id_ecdsa_sk -p 2222 root@127.0.0.1 echo SSH-LOGIN-OK | grep -q SSH-LOGIN-OK'
if grep -q "Accepted publickey for root.*ECDSA-SK" /tmp/sshd.log; then result sshd-accepted-ecdsa-sk PASS
else result sshd-accepted-ecdsa-sk FAIL; echo "--- sshd log"; tail -15 /tmp/sshd.log; fi

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

# The desktop prompt: a session bus, a notification server that clicks
# Allow, and the daemon's default presence mode.
mkdir -p /etc && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/machine-id
dbus-daemon --config-file=/usr/share/dbus-1/session.conf --address=unix:path=/tmp/session-bus --fork --nopidfile
export DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/session-bus
sleep 0.3
notifyd > /tmp/notifyd.log 2>&1 &
sleep 0.3
kill -TERM $DAEMON; wait $DAEMON 2>/dev/null
i=0; while [ -e /dev/hidraw0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
/bin/tpm-u2f run --tpm /dev/tpmrm0 --transport uhid --presence dbus --state /tmp/state >> /tmp/daemon.log 2>&1 &
DAEMON=$!
i=0; while [ ! -e /dev/hidraw0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
printf '%s\n%s\n%s\n' "$(b64rand)" example.org "$(head -1 /tmp/cred_key)" > /tmp/assert_param
check dbus-prompt-assert sh -c 'fido2-assert -G -p -i /tmp/assert_param -o /tmp/assert /dev/hidraw0 && fido2-assert -V -p -i /tmp/assert /tmp/pub.pem es256'
if grep -q "clicked Allow" /tmp/notifyd.log && grep -q "sign in" /tmp/notifyd.log; then result dbus-prompt-shown PASS "$(grep shown /tmp/notifyd.log | head -1 | cut -c1-90)"
else result dbus-prompt-shown FAIL; cat /tmp/notifyd.log; fi
unset DBUS_SESSION_BUS_ADDRESS

# CTAP2 (experimental, --ctap2): libfido2 now speaks CTAP2 to the key.
kill -TERM $DAEMON; wait $DAEMON 2>/dev/null
i=0; while [ -e /dev/hidraw0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
/bin/tpm-u2f run --tpm /dev/tpmrm0 --transport uhid --presence always --ctap2 --state /tmp/state >> /tmp/daemon.log 2>&1 &
DAEMON=$!
i=0; while [ ! -e /dev/hidraw0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
check ctap2-token-info sh -c 'fido2-token -I /dev/hidraw0 | tee /dev/stderr | grep -q "FIDO_2_0"'
printf '%s\n%s\n%s\n%s\n' "$(b64rand)" passkeys.example bob "$(b64rand)" > /tmp/rk_param
check ctap2-cred-make-resident sh -c 'fido2-cred -M -r -i /tmp/rk_param -o /tmp/rk /dev/hidraw0 && fido2-cred -V -i /tmp/rk -o /tmp/rk_key'
printf '%s\n%s\n' "$(b64rand)" passkeys.example > /tmp/rka_param
check ctap2-assert-discoverable sh -c 'fido2-assert -G -r -p -i /tmp/rka_param -o /tmp/rka /dev/hidraw0 && tail -n +2 /tmp/rk_key > /tmp/rk.pem && fido2-assert -V -p -i /tmp/rka /tmp/rk.pem es256'
check ctap2-ssh-keygen-resident ssh-keygen -t ecdsa-sk -O resident -O application=ssh:e2e -f /root/.ssh/id_rk -N '' -C tpm-u2f-resident
cp /root/.ssh/id_rk.pub /root/.ssh/authorized_keys 2>/dev/null
check ctap2-ssh-login-resident sh -c 'ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i /root/.ssh/id_rk -p 2222 root@127.0.0.1 echo SSH-LOGIN-OK | grep -q SSH-LOGIN-OK'

kill -TERM $DAEMON
i=0; while kill -0 $DAEMON 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
if kill -0 $DAEMON 2>/dev/null; then result daemon-stops FAIL; else result daemon-stops PASS; fi
[ -e /dev/hidraw0 ] && result device-destroyed FAIL "hidraw0 still there" || result device-destroyed PASS
echo "--- daemon log (last 15 lines)"; tail -15 /tmp/daemon.log
