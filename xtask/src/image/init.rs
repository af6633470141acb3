//! The guest's boot scripts: busybox `init` runs `rc.hutch` once, then keeps
//! `hutch-agent` running (respawned if it dies) and reaps orphans, which the
//! agent must not do itself (it waits for its own children only).

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
# The workspace share is mounted by the agent (its Prepare call), at the host's own path.
echo "hutch-init: ready, starting hutch-agent"
"#;
