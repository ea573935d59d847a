#!/bin/sh
# Runs in the `make e2e-deb` guest (scripts/e2e/deb.sh) as the system's
# e2e-deb.service, on a Debian bookworm booted with systemd: installs the
# .deb with dpkg as an admin would, lets the user alice log in (autologin on
# tty1: a seat0 session with a user manager and the emulated graphical
# session of /etc/systemd/user/e2e-session.service), signs with libfido2 as
# alice, then removes, reinstalls, upgrades and purges the package, and
# last installs it once more on a system without its group, with a uevent
# between unpack and configure. One "E2E RESULT <test> PASS|FAIL <detail>"
# line per test; the host counts them.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
U=alice
UID_=1000
HOME_=/home/$U
STATE=$HOME_/.local/state/tpm-u2f
DEB=$(ls /e2e/tpm-u2f_*.deb)
result() { echo "E2E RESULT $1 $2 ${3:-} (t=$(cut -d' ' -f1 /proc/uptime))"; }
# check NAME CMD...: PASS when CMD succeeds; else FAIL, its output and the
# daemon's journal.
check() {
  name=$1; shift
  if "$@" > /tmp/$name.out 2>&1; then result "$name" PASS "$(tail -1 /tmp/$name.out | cut -c1-100)"
  else
    result "$name" FAIL "$(tail -3 /tmp/$name.out | tr '\n' ' ' | cut -c1-200)"
    echo "--- $name output"; head -40 /tmp/$name.out
    echo "--- $name: tpm-u2f's journal (last 10 lines)"; journalctl -q --no-pager -n 10 _SYSTEMD_USER_UNIT=tpm-u2f.service 2>&1
  fi
}
# wait_for SECONDS CMD...: polls CMD every 0.5 s until SECONDS of wall
# time have passed (each systemctl call takes a while under TCG).
wait_for() { end=$(( $(date +%s) + $1 )); shift; while [ "$(date +%s)" -lt $end ]; do out=$("$@" 2>&1) && { echo "$out"; return 0; }; sleep 0.5; done; "$@"; }
# The user's manager, as root sees it (systemctl --user --machine alice@).
usys() { systemctl --user --machine=$U@ "$@"; }
# As alice, with her session's runtime dir and bus, as her desktop apps run.
as_user() { runuser -u $U -- env XDG_RUNTIME_DIR=/run/user/$UID_ DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$UID_/bus HOME=$HOME_ "$@"; }
unit_running() { [ "$(usys show -P ActiveState tpm-u2f.service)" = active ] && [ "$(usys show -P SubState tpm-u2f.service)" = running ]; }
daemon_gone() { ! pgrep -x tpm-u2f >/dev/null; }
# The key's hidraw node, from sysfs (bus USB, vendor 15D9, product 0A37).
key_node() {
  for d in /sys/class/hidraw/hidraw*; do
    grep -qi '^HID_ID=0003:000015D9:00000A37$' "$d/device/uevent" 2>/dev/null && { echo "/dev/$(basename "$d")"; return 0; }
  done
  return 1
}
# Every file of the user's state with its mode, owner and hash.
state_snapshot() { (cd "$STATE" && find . -printf '%p %m %u:%g %s\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
b64rand() { head -c 32 /dev/urandom | base64; }

echo "E2E BOOTED uptime=$(cut -d' ' -f1 /proc/uptime) $(systemctl is-system-running) systemd $(systemctl --version | head -1 | cut -d' ' -f2) kernel $(uname -r)"
systemctl --no-pager --failed --plain --no-legend | sed 's/^/failed unit: /'

# 1. dpkg -i, as an admin would; the postinst adds the group, reloads udev
#    and loads uhid.
check deb-install dpkg -i "$DEB"
check deb-group getent group tpm-u2f
udevadm settle
check deb-uhid-loaded grep -q '^uhid ' /proc/modules
check deb-uhid-group sh -c 'stat -c "%n %G %a" /dev/uhid | tee /dev/stderr | grep -qx "/dev/uhid tpm-u2f 660" || { udevadm info /dev/uhid; journalctl -q --no-pager -b -u systemd-udevd | tail -5; exit 1; }'
check deb-tpmrm0-group sh -c 'stat -c "%n %G %a" /dev/tpmrm0 | tee /dev/stderr | grep -qx "/dev/tpmrm0 tss 660"'
# The modules-load conf loads uhid at boot: systemd-modules-load, run
# again with uhid unloaded, brings it back.
check deb-modules-load sh -c 'rmmod uhid && systemctl restart systemd-modules-load.service && grep -q "^uhid " /proc/modules && ls /usr/lib/modules-load.d/tpm-u2f.conf'
check deb-unit-enabled-globally sh -c 'ls -l /etc/systemd/user/graphical-session.target.wants/tpm-u2f.service'

# 2. alice joins the groups, as the postinst asks, and logs in (autologin on
#    tty1): logind, her user manager, default.target, the emulated
#    desktop's session unit, graphical-session.target, and tpm-u2f.
usermod -aG tpm-u2f,tss $U
systemctl start getty@tty1.service
check deb-login wait_for 60 sh -c "loginctl show-user $U -P State | grep -qx active && loginctl list-sessions --no-legend | grep -q 'seat0'"
check deb-session-bus wait_for 30 test -S /run/user/$UID_/bus
check deb-graphical-session wait_for 60 sh -c "[ \$(systemctl --user --machine=$U@ is-active graphical-session.target) = active ]"
check deb-unit-enabled sh -c "systemctl --user --machine=$U@ is-enabled tpm-u2f.service | tee /dev/stderr | grep -qx enabled"
check deb-unit-running wait_for 60 unit_running
status=$(usys show -P StatusText tpm-u2f.service)
[ -n "$status" ] && result deb-unit-status PASS "$status" || result deb-unit-status FAIL "no STATUS="
pid=$(usys show -P MainPID tpm-u2f.service)
check deb-unit-on-tpmrm0 sh -c "ls -l /proc/$pid/fd | grep -E 'tpmrm0|uhid' && ls -l /proc/$pid/fd | grep -q /dev/tpmrm0 && [ \$(stat -c %U /proc/$pid) = $U ]"
# The unit's hardening is in force on the running daemon: no new
# privileges, a seccomp filter (SystemCallFilter=, MemoryDenyWriteExecute=,
# RestrictNamespaces=, ...), and it still serves /dev/uhid and the TPM.
check deb-unit-hardened sh -c "grep -E '^(NoNewPrivs|Seccomp):' /proc/$pid/status | tr '\n' ' ' && grep -qx 'NoNewPrivs:[[:space:]]*1' /proc/$pid/status && grep -qx 'Seccomp:[[:space:]]*2' /proc/$pid/status && [ \"\$(systemctl --user --machine=$U@ show -P MemoryDenyWriteExecute tpm-u2f.service)\" = yes ]"
user_can_open_key() { n=$(key_node) && echo "$n" && runuser -u $U -- test -r "$n" -a -w "$n"; }
check deb-hidraw-uaccess wait_for 20 user_can_open_key

# 3. A real client, as alice: a credential and an assertion, verified by
#    libfido2; presence through the desktop prompt (notifyd clicks Allow).
printf '%s\n%s\n%s\n%s\n' "$(b64rand)" example.org alice "$(b64rand)" > /tmp/cred_param
chmod 644 /tmp/cred_param
check deb-fido2-cred as_user sh -c "fido2-cred -M -i /tmp/cred_param -o /tmp/cred $(key_node) && fido2-cred -V -i /tmp/cred -o /tmp/cred_key && head -1 /tmp/cred_key"
CRED_ID=$(head -1 /tmp/cred_key)
assert() { # NAME: fido2-assert -G with the credential of deb-fido2-cred, verified
  printf '%s\n%s\n%s\n' "$(b64rand)" example.org "$CRED_ID" > /tmp/assert_param; chmod 644 /tmp/assert_param
  check "$1" as_user sh -c "fido2-assert -G -p -i /tmp/assert_param -o /tmp/assert_$1 $(key_node) && tail -n +2 /tmp/cred_key > /tmp/pub.pem && fido2-assert -V -p -i /tmp/assert_$1 /tmp/pub.pem es256 && echo credential $CRED_ID"
}
assert deb-fido2-assert
check deb-dbus-prompt sh -c 'grep -q "clicked Allow" /tmp/notifyd.log && grep shown /tmp/notifyd.log | head -1'
check deb-doctor sh -c "runuser -u $U -- env XDG_RUNTIME_DIR=/run/user/$UID_ DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$UID_/bus HOME=$HOME_ tpm-u2f doctor > /tmp/doctor.txt 2>&1; rc=\$?; cat /tmp/doctor.txt; ! grep -q '^FIX' /tmp/doctor.txt && [ \$rc = 0 ] && echo \"\$(grep -c '^OK' /tmp/doctor.txt) OK, no FIX\""
echo "--- tpm-u2f doctor, as alice"; cat /tmp/doctor.txt

# 4. dpkg -r with the daemon running: it stops (the prerm), the unit is
#    masked, the key goes away, and the user's state stays. The daemon's
#    own clean stop saves the replay store's clock (replay.Store.Close
#    rewrites replay.state), so that file is compared by name, mode and
#    owner only; every other file byte for byte. dpkg -i again: a new
#    daemon from the reinstalled binary signs with the same credential,
#    and again after an upgrade. dpkg -P, the daemon stopped first: every
#    file byte for byte.
state_snapshot > /tmp/state.before
check deb-remove dpkg -r tpm-u2f
check deb-remove-daemon-stopped wait_for 20 daemon_gone
check deb-remove-unit-disabled sh -c "s=\$(systemctl --user --machine=$U@ is-enabled tpm-u2f.service); echo \"is-enabled: \$s\"; [ \"\$s\" != enabled ] && [ ! -e /usr/lib/systemd/user/tpm-u2f.service ] && [ ! -e /usr/bin/tpm-u2f ]"
no_key_node() { ! key_node; }
check deb-remove-device-gone wait_for 10 no_key_node
state_snapshot > /tmp/state.after
check deb-remove-state-kept sh -c 'grep -v "^[0-9a-f]\{64\}  ./replay.state\$" /tmp/state.before > /tmp/b; grep -v "^[0-9a-f]\{64\}  ./replay.state\$" /tmp/state.after > /tmp/a; diff /tmp/b /tmp/a && echo "$(grep -c . /tmp/a) entries kept; replay.state $(cmp -s /tmp/state.before /tmp/state.after && echo unchanged || echo "saved by the daemon at its stop")"'
check deb-reinstall dpkg -i "$DEB"
check deb-reinstall-unit-enabled sh -c "systemctl --user --machine=$U@ is-enabled tpm-u2f.service | tee /dev/stderr | grep -qx enabled"
# A new daemon, from the reinstalled binary (not one left running).
new_daemon() { unit_running && p=$(usys show -P MainPID tpm-u2f.service) && [ "$p" != "$pid" ] && readlink /proc/$p/exe | grep -qx /usr/bin/tpm-u2f && echo "MainPID $pid -> $p"; }
check deb-reinstall-unit-running wait_for 60 new_daemon
check deb-reinstall-hidraw wait_for 20 key_node
assert deb-reinstall-same-credential
# An upgrade (the same package, a higher version) with the daemon
# running: dpkg keeps it running through the unpack and the postinst
# restarts it from the new binary; the credential still signs.
pid=$(usys show -P MainPID tpm-u2f.service)
UPGRADE=$(ls /e2e/upgrade/tpm-u2f_*.deb)
check deb-upgrade sh -c "dpkg -i $UPGRADE && dpkg-query -W -f '\${Version}\n' tpm-u2f | grep -q '+e2e1\$' && dpkg-query -W tpm-u2f"
check deb-upgrade-restarted wait_for 60 new_daemon
assert deb-upgrade-same-credential
check deb-purge-stop-daemon sh -c "systemctl --user --machine=$U@ stop tpm-u2f.service && ! pgrep -x tpm-u2f"
state_snapshot > /tmp/state.before
check deb-purge dpkg -P tpm-u2f
check deb-purge-unit-forgotten sh -c "! ls /etc/systemd/user/tpm-u2f.service /etc/systemd/user/graphical-session.target.wants/tpm-u2f.service 2>/dev/null"
state_snapshot > /tmp/state.after
check deb-purge-state-kept sh -c 'diff /tmp/state.before /tmp/state.after && echo "$(grep -c . /tmp/state.after) entries byte for byte"'
check deb-purge-group-kept getent group tpm-u2f
# 5. The tpm-u2f group must exist before 70-tpm-u2f.rules lands: udevd
#    loads new rules at the next uevent (at most every 3 s) and resolves
#    GROUP= then, and `udevadm control --reload` later re-reads nothing
#    while the rule files are unchanged. On a fresh system (group deleted,
#    /dev/uhid back to root), a uevent between the unpack and the
#    postinst, as any other package or device may cause, must not leave
#    /dev/uhid to root.
groupdel tpm-u2f
chgrp root /dev/uhid
check deb-fresh-unpack dpkg --unpack "$DEB"
sleep 4
udevadm trigger --action=change --subsystem-match=misc --sysname-match=uhid
udevadm settle
check deb-fresh-configure dpkg --configure tpm-u2f
udevadm settle
check deb-fresh-uhid-group sh -c 'stat -c "%n %G %a" /dev/uhid | tee /dev/stderr | grep -qx "/dev/uhid tpm-u2f 660"'
echo "E2E DONE"
