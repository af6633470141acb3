//! Unix sockets at any path length.
//!
//! `sockaddr_un` holds only 104 bytes of path on macOS (108 on Linux), and
//! the sockets hutch reaches are often deeper than that: Tart's
//! `~/.tart/vms/NAME/control.sock` or Lima's `~/.lima/NAME/sock/hutch.sock`
//! under a long home folder. A path that does not fit is reached through a
//! short symlink in a fresh private folder under /tmp (`connect(2)` follows
//! symlinks), removed again once connected. Changing the working directory
//! instead would race with other threads.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UnixStream;

/// Longest socket path passed to `connect(2)` as is: macOS's limit (104
/// bytes including the NUL), the smaller of the two, so behaviour is the same
/// on every host.
pub const MAX_DIRECT_PATH: usize = 103;

/// Connects to the Unix socket at `path`, however long it is.
pub async fn connect(path: &Path) -> io::Result<UnixStream> {
    if path.as_os_str().as_bytes().len() <= MAX_DIRECT_PATH {
        return UnixStream::connect(path).await;
    }
    let link = ShortLink::new(path)?;
    UnixStream::connect(&link.link).await
}

/// A private folder under /tmp holding one symlink to a long socket path;
/// both are removed on drop.
struct ShortLink {
    dir: PathBuf,
    link: PathBuf,
}

impl ShortLink {
    fn new(target: &Path) -> io::Result<ShortLink> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // connect(2) reports a missing target through the link; check first so
        // the error names the real path's problem, not the link's.
        std::fs::symlink_metadata(target)?;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = PathBuf::from(format!("/tmp/hutch-{}-{n}", std::process::id()));
            // `create`, not `create_dir_all`: failing on an existing folder
            // guarantees the folder is ours (mode 0700), not planted by another user.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let link = dir.join("s");
                    let made = ShortLink { dir, link };
                    std::os::unix::fs::symlink(target, &made.link)?;
                    return Ok(made);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for ShortLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
