//! What QEMU's helper daemons (virtiofsd, vhost-device-vsock) and QEMU
//! itself share: the socket path check and the error for a daemon that
//! would not start. Below [`super::vsock`] and [`super::virtiofs`], so that
//! neither names the other nor the backend above them.

use std::path::Path;

use crate::backend::BackendError;
use crate::daemon::DaemonError;

/// Linux's limit for a Unix socket path (`sun_path` minus the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Refuses socket paths the kernel would truncate.
pub fn check_socket_path(path: &Path) -> Result<(), BackendError> {
    let len = path.as_os_str().len() + "_65535".len();
    if len > MAX_SOCKET_PATH {
        return Err(BackendError::Unsupported(format!(
            "the VM's socket path {} is too long for a Unix socket ({len} > {MAX_SOCKET_PATH} bytes): set HUTCH_STATE_DIR to a shorter folder",
            path.display()
        )));
    }
    Ok(())
}

/// The backend's error for a daemon that would not start; `install` says
/// how to get its program when it is missing.
pub fn daemon_error(error: DaemonError, install: &str) -> BackendError {
    match error {
        DaemonError::NotFound { program } => BackendError::MissingTool { tool: program, install: install.into() },
        other => BackendError::Boot(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn long_socket_paths_are_refused() {
        assert!(check_socket_path(Path::new("/tmp/s.sock")).is_ok());
        let long = PathBuf::from(format!("/{}/vsock.sock", "d".repeat(120)));
        assert!(check_socket_path(&long).is_err());
    }
}
