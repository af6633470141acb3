//! The system a command expects, before anything starts: kernel file systems
//! mounted, a host name, the loopback interface up.

use std::path::Path;

use nix::mount::{MsFlags, mount};

use super::log;
use crate::prepare::mounts::{Mounts, System};

/// The host name when the image names none in /etc/hostname.
const DEFAULT_HOSTNAME: &str = "hutch-guest";

/// Mounts, host name, loopback. Each step logs what failed and goes on: a
/// guest with a missing piece still starts the agent, which can say more.
pub fn system() {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let noexec = nodev | MsFlags::MS_NOEXEC;
    // The initramfs moved /proc, /sys, /dev and mounted /run: mounted only if missing.
    let mounts: &[(&str, &str, &str, MsFlags, Option<&str>)] = &[
        ("proc", "/proc", "proc", noexec, None),
        ("sysfs", "/sys", "sysfs", noexec, None),
        ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755")),
        ("devpts", "/dev/pts", "devpts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("gid=5,mode=620,ptmxmode=666")),
        ("tmpfs", "/dev/shm", "tmpfs", nodev, Some("mode=1777")),
        ("tmpfs", "/run", "tmpfs", nodev, Some("mode=0755")),
    ];
    for (source, target, fstype, flags, data) in mounts {
        let target = Path::new(target);
        if System.is_mountpoint(target) {
            continue;
        }
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(Some(*source), target, Some(*fstype), *flags, *data) {
            log(format!("mounting {fstype} at {}: {e}", target.display()));
        }
    }
    for link in [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ] {
        let _ = std::os::unix::fs::symlink(link.0, link.1);
    }
    let _ = std::fs::create_dir_all("/run/lock");
    let hostname = std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty());
    if let Err(e) = nix::unistd::sethostname(hostname.as_deref().unwrap_or(DEFAULT_HOSTNAME)) {
        log(format!("setting the host name: {e}"));
    }
    if let Err(e) = loopback_up() {
        log(format!("bringing up lo: {e}"));
    }
}

/// `ip link set lo up` (the kernel gives it 127.0.0.1 and ::1 by itself).
fn loopback_up() -> std::io::Result<()> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero ifreq is valid; the name fits with its NUL.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `request`, which lives across both calls.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
