//! The initramfs's boot scripts. `/init` (PID 1) either hands over to
//! busybox `init` (the RAM image), which runs `rc.hutch` once, then keeps
//! `hutch-agent` running (respawned if it dies) and reaps orphans, which the
//! agent must not do itself (it waits for its own children only); or, with
//! `hutch.root=` on the kernel command line, loads the modules, mounts a
//! disk's root filesystem and hands over to its init: with `hutch.init=agent`
//! (the default Debian image) hutch's own init, the agent binary of this
//! initramfs copied to the new root's `/run` and run as PID 1 there; without
//! it the disk's own `/sbin/init` (systemd, a prepared image).

/// /init: RAM image or disk image, by the kernel command line.
pub const INIT: &str = r#"#!/bin/sh
# hutch guest init (PID 1). With hutch.root=auto|DEVICE on the kernel command
# line: boot a disk image, into hutch's init (hutch.init=agent) or the disk's
# own /sbin/init. Otherwise: the RAM image.
/bin/busybox mount -t proc proc /proc
root=""
init=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hutch.root=*) root="${arg#hutch.root=}";;
    hutch.init=*) init="${arg#hutch.init=}";;
  esac
done
if [ -z "$root" ]; then
  umount /proc
  exec /bin/busybox init
fi
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The disk's userland never needs modules of its own for what hutch uses:
# virtio (disk, network, vsock), virtio-fs, 9p and ext4 are loaded here and stay loaded.
for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m.ko" || echo "hutch-init: insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ "$root" = auto ]; then candidates="/dev/vda $(ls /dev/vda[0-9]* 2>/dev/null)"; else candidates="$root"; fi
# hutch's init needs only a root file system; the disk's own, its /sbin/init.
if [ "$init" = agent ]; then next=/run/hutch/hutch-agent; options=rw,discard; wants=/newroot/etc; else next=/sbin/init; options=rw; wants=/newroot/sbin/init; fi
mkdir -p /newroot
found=""
for dev in $candidates; do
  [ -b "$dev" ] || continue
  if mount -o "$options" "$dev" /newroot 2>/dev/null; then
    if [ -e "$wants" ] || [ -L "$wants" ]; then found="$dev"; break; fi
    umount /newroot
  fi
done
if [ -z "$found" ]; then
  echo "hutch-init: no root file system with ${wants#/newroot} on ${candidates:-the first disk} (ext4 is supported)"
  poweroff -f
fi
if [ "$init" = agent ]; then
  mkdir -p /newroot/run
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run
  mkdir /newroot/run/hutch
  cp /bin/hutch-agent "/newroot$next"
fi
echo "hutch-init: root file system on $found, starting $next"
for fs in dev proc sys; do mkdir -p "/newroot/$fs"; mount --move "/$fs" "/newroot/$fs"; done
exec switch_root /newroot "$next"
"#;

/// /etc/inittab for busybox init.
pub const INITTAB: &str = "\
::sysinit:/etc/rc.hutch
::respawn:/bin/env HOME=/root TERM=linux /bin/hutch-agent --listen vsock://any:8080
::ctrlaltdel:/bin/poweroff -f
::shutdown:/bin/sync
";

/// /etc/rc.hutch: filesystems, modules, the workspace share.
pub const RC: &str = r#"#!/bin/sh
# hutch guest setup, run once by busybox init before the agent starts.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /root
for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m.ko" || echo "hutch-init: insmod $m failed"
done
hostname hutch-guest
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
# The VM's own machine id, from the host (each VM has one of its own).
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hutch.machine_id=*) echo "${arg#hutch.machine_id=}" > /etc/machine-id;;
  esac
done
# The workspace share is mounted by the agent (its Prepare call), at the host's own path.
echo "hutch-init: ready, starting hutch-agent"
"#;
