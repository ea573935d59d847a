#!/bin/busybox sh
# The initramfs of `make e2e-deb` (scripts/e2e/deb.sh): mounts the Debian
# root (build/e2e/deb-root, shared read-only over 9p) under an overlayfs
# whose writes go to a tmpfs, lays the test files (/payload: the .deb, the
# test unit and script, the emulated session's user units) over it, and
# hands the machine to systemd. The cached root is never written to.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /lower /rw /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "E2E RESULT initramfs FAIL $*"; echo "E2E DONE"; echo o > /proc/sysrq-trigger; sleep 10; }
# 9p over virtio-pci and overlayfs, from the same Debian kernel package.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay; do
  insmod /lib/modules/$m.ko || fail "insmod $m"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 debroot /lower || fail "mount 9p"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "mount overlay"
cp -a /payload/. /newroot/
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
