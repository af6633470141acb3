//! Giving a QEMU guest a vsock device the host can reach.
//!
//! - With `/dev/vhost-vsock` (KVM hosts): the kernel's `vhost-vsock-pci` with a
//!   guest CID; hutch connects with AF_VSOCK (`vsock://CID:PORT`).
//! - Without it (containers, CI, this project's own machine): rust-vmm's
//!   `vhost-device-vsock` implements the device in user space behind a
//!   `vhost-user-vsock-pci`; its host side is a Unix socket speaking the
//!   hybrid-vsock handshake (`hvsock:///…/vsock.sock:PORT`). One daemon per
//!   VM, started before QEMU and stopped after it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::helper::{check_socket_path, daemon_error};
use crate::backend::BackendError;
use crate::daemon::{Daemon, DaemonError};

/// The control socket QEMU and vhost-device-vsock share.
pub const VHOST_SOCKET: &str = "vhost.sock";
/// The hybrid-vsock socket hutch connects to.
pub const HVSOCK_SOCKET: &str = "vsock.sock";
/// The guest CID used with vhost-device-vsock (private to each daemon).
pub const USER_SPACE_CID: u32 = 3;
/// How to get vhost-device-vsock.
pub const INSTALL: &str = "install it with `cargo install vhost-device-vsock --locked` (or set HUTCH_VHOST_DEVICE_VSOCK to its path)";

/// How this VM gets its vsock device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// The kernel's vhost-vsock, with this CID.
    Kernel {
        /// The guest's context id.
        cid: u32,
    },
    /// vhost-device-vsock, running as the VM's daemon [`daemon`].
    UserSpace,
}

/// Whether the kernel's vhost-vsock can be used.
pub fn kernel_available() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/vhost-vsock").is_ok()
}

/// A CID for `name` in the kernel's shared CID space (3 and up); collisions
/// make QEMU fail at start, and the caller may retry with `attempt + 1`.
pub fn kernel_cid(name: &str, attempt: u32) -> u32 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    3 + (hash.wrapping_add(attempt) % 0x00ff_fff0)
}

/// Starts vhost-device-vsock for the VM in `vm_dir` and waits for its socket.
pub fn start_user_space(binary: &Path, vm_dir: &Path) -> Result<Device, BackendError> {
    let vhost = vm_dir.join(VHOST_SOCKET);
    let uds = vm_dir.join(HVSOCK_SOCKET);
    check_socket_path(&uds)?;
    for stale in [&vhost, &uds] {
        let _ = std::fs::remove_file(stale);
    }
    let mut cmd = Command::new(binary);
    cmd.arg("--guest-cid").arg(USER_SPACE_CID.to_string()).arg("--socket").arg(&vhost).arg("--uds-path").arg(&uds);
    let daemon = daemon(vm_dir);
    let spawned = daemon.spawn(cmd).map_err(|e| daemon_error(e, INSTALL))?;
    spawned.wait_until(Duration::from_secs(10), |_| vhost.exists()).map_err(|e| match e {
        DaemonError::Exited { .. } => BackendError::Boot(format!("process {} exited before creating {}", spawned.pid, vhost.display())),
        DaemonError::TimedOut { timeout, .. } => BackendError::Boot(format!("{} did not appear within {timeout:?}", vhost.display())),
        other => daemon_error(other, INSTALL),
    })?;
    Ok(Device::UserSpace)
}

/// vhost-device-vsock as a daemon of the VM in `vm_dir` (its output in
/// `vhost-device-vsock.log`).
pub fn daemon(vm_dir: &Path) -> Daemon {
    Daemon::new(vm_dir, "vhost-device-vsock")
}

/// The hybrid-vsock socket of the VM in `vm_dir`.
pub fn hvsock_path(vm_dir: &Path) -> PathBuf {
    vm_dir.join(HVSOCK_SOCKET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cids_are_in_range_and_vary_with_the_attempt() {
        for name in ["a", "web-1", "x".repeat(48).as_str()] {
            let cid = kernel_cid(name, 0);
            assert!((3..u32::MAX - 1).contains(&cid));
            assert_ne!(cid, kernel_cid(name, 1));
        }
    }
}
