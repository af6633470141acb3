//! The mount operations `Prepare` performs, behind a trait.
//!
//! Mounting is the one part of `Prepare` that needs root, so its logic (what
//! to mount where, what to skip, what is already done) talks to a [`Mounts`]
//! and never to the kernel directly, as youki's `Syscall` trait does: unit
//! tests drive that logic with a fake that records the calls and needs no
//! root, and [`System`] is the real thing, which the integration and e2e
//! tests (run as root, and in real guests) prove.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use hutch_proto::mountinfo::mount_points;

/// The mount operations of `Prepare`.
pub trait Mounts {
    /// Whether something is mounted exactly at `path`.
    fn is_mountpoint(&self, path: &Path) -> bool;

    /// Mounts file system `fstype` from `source` (a 9p or virtiofs tag) at
    /// the folder `target`, with `options`.
    fn mount_fs(&self, source: &str, fstype: &str, target: &Path, options: Option<&str>) -> io::Result<()>;

    /// Bind-mounts the folder `source`, with whatever is mounted below it,
    /// onto `target`, which the caller has opened as `target_fd` without
    /// following symlinks: the mount lands on that very folder, not wherever
    /// a symlink swapped in since would lead.
    fn bind(&self, source: &Path, target: &Path, target_fd: BorrowedFd<'_>) -> io::Result<()>;
}

/// The kernel's mounts.
pub struct System;

impl Mounts for System {
    fn is_mountpoint(&self, path: &Path) -> bool {
        let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
        mount_points(&table).iter().any(|m| m == path)
    }

    #[cfg(target_os = "linux")]
    fn mount_fs(&self, source: &str, fstype: &str, target: &Path, options: Option<&str>) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        mount(Some(source), target, Some(fstype), MsFlags::empty(), options).map_err(io::Error::from)
    }

    #[cfg(not(target_os = "linux"))]
    fn mount_fs(&self, source: &str, fstype: &str, _target: &Path, _options: Option<&str>) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, format!("{fstype} share {source:?}: only Linux guests mount shares by tag")))
    }

    #[cfg(target_os = "linux")]
    fn bind(&self, source: &Path, target: &Path, target_fd: BorrowedFd<'_>) -> io::Result<()> {
        use std::os::fd::AsRawFd;

        use nix::mount::{MsFlags, mount};
        // The descriptor's /proc link names the opened folder itself (runc
        // and youki mount the same way); without /proc, the checked path.
        let by_fd = std::path::PathBuf::from(format!("/proc/self/fd/{}", target_fd.as_raw_fd()));
        let at = if by_fd.exists() { by_fd.as_path() } else { target };
        // Recursive: a host's view of `.git` carries its objects as a mount of their own.
        mount(Some(source), at, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(io::Error::from)
    }

    #[cfg(not(target_os = "linux"))]
    fn bind(&self, _source: &Path, target: &Path, _target_fd: BorrowedFd<'_>) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, format!("{}: bind mounts need a Linux guest", target.display())))
    }
}

/// A fake [`Mounts`] for unit tests: records every call and treats what it
/// mounted as mounted.
#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    /// One recorded call.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        /// `mount_fs(source, fstype, target, options)`.
        Fs(String, String, PathBuf, Option<String>),
        /// `bind(source, target)`.
        Bind(PathBuf, PathBuf),
    }

    /// Records calls; `mounted` starts with whatever the test says.
    #[derive(Default)]
    pub struct Recorder {
        /// Every mount call so far.
        pub calls: RefCell<Vec<Call>>,
        /// What counts as mounted.
        pub mounted: RefCell<Vec<PathBuf>>,
    }

    impl super::Mounts for Recorder {
        fn is_mountpoint(&self, path: &Path) -> bool {
            self.mounted.borrow().iter().any(|m| m == path)
        }

        fn mount_fs(&self, source: &str, fstype: &str, target: &Path, options: Option<&str>) -> std::io::Result<()> {
            assert!(target.is_dir(), "mounting on {} which is not a folder", target.display());
            self.calls.borrow_mut().push(Call::Fs(source.into(), fstype.into(), target.into(), options.map(Into::into)));
            self.mounted.borrow_mut().push(target.into());
            Ok(())
        }

        fn bind(&self, source: &Path, target: &Path, _target_fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
            let meta = std::fs::symlink_metadata(target).expect("the bind target exists");
            assert!(meta.is_dir(), "binding onto {}, which is not a real folder", target.display());
            self.calls.borrow_mut().push(Call::Bind(source.into(), target.into()));
            self.mounted.borrow_mut().push(target.into());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_real_mount_points() {
        assert!(System.is_mountpoint(Path::new("/proc")));
        assert!(!System.is_mountpoint(Path::new("/surely/not/mounted")));
    }
}
