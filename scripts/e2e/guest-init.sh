#!/bin/busybox sh
# PID 1 of the e2e guest: set up the system, run tests.sh, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin LD_LIBRARY_PATH=/lib:/lib64 HOME=/root
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# pseudo-terminals: the PIN tests answer libfido2's tty prompts through one.
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
ip link set lo up
echo "E2E BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"
sh /tests.sh
echo "E2E DONE"
echo o > /proc/sysrq-trigger
sleep 10
