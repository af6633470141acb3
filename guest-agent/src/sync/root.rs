//! Finding a snapshot's root folder without following a symlink on the way.
//!
//! A snapshot root is the host's path (absolute, canonical on the host), so
//! in the guest no component of it has a reason to be a symlink. One that is
//! may have been put there by an earlier Sync (a snapshot of `/p` holding
//! `esc -> /elsewhere`, then a Sync of `/p/esc`): following it would write,
//! delete, chmod, list and read outside every snapshot. So the root is opened
//! one component at a time from `/` (or from `--snapshot-prefix`, which the
//! agent's operator chose and is trusted) with `O_NOFOLLOW`, missing folders
//! are created on the way, and a symlink anywhere refuses the call.
//!
//! The opened descriptor is what the Sync or diff then works from; the tree
//! walk, which takes a path, gets `/proc/self/fd/N`, which names that very
//! folder whatever happens to the path meanwhile.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::validate::{OpenError, Refused, open_dir};
use super::{Config, SyncError};
use crate::untrusted::shown_str;

/// An opened snapshot root.
pub struct SnapshotRoot {
    fd: OwnedFd,
    /// Where it is (for messages, and for the walk where /proc is missing).
    path: PathBuf,
    /// Whether this call created it.
    pub fresh: bool,
}

impl SnapshotRoot {
    /// Opens the snapshot of host folder `root` (absolute, without `.`,
    /// `..` or a symlink in the guest), creating it when `create` is set.
    pub fn open(config: &Config, root: &str, create: bool) -> Result<SnapshotRoot, SyncError> {
        let relative = clean(root)?;
        let (base, mut path) = match &config.prefix {
            Some(prefix) => {
                if create {
                    std::fs::create_dir_all(prefix).map_err(SyncError::io(format!("creating {}", prefix.display())))?;
                }
                (prefix.as_path(), prefix.clone())
            }
            None => (Path::new("/"), PathBuf::from("/")),
        };
        let mut fd = nix::fcntl::open(base, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| SyncError::Io { what: format!("opening {}", base.display()), source: e.into() })?;
        let mut fresh = false;
        for name in relative.split('/') {
            path.push(name);
            let found = match open_dir(fd.as_fd(), name.as_bytes(), false) {
                Err(OpenError::Missing) if create => {
                    fresh = true;
                    open_dir(fd.as_fd(), name.as_bytes(), true)
                }
                other => other,
            };
            fd = found.map_err(|e| refusal(root, &path, e))?;
        }
        Ok(SnapshotRoot { fd, path, fresh })
    }

    /// A path to the opened folder for code that takes paths (the tree
    /// walk): `/proc/self/fd/N` where /proc is mounted, else the path it
    /// was opened at (checked then, though no longer held).
    pub fn walk_path(&self) -> PathBuf {
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        if by_fd.is_dir() { by_fd } else { self.path.clone() }
    }

    /// Where the snapshot is.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second descriptor of the folder.
    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// The folder's descriptor, for what works below it.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// `root` without its leading `/`, if it is a clean absolute folder path.
fn clean(root: &str) -> Result<&str, SyncError> {
    let bad = |why: &str| SyncError::BadRequest(format!("snapshot root \"{}\": {why}", shown_str(root)));
    if root.len() > crate::limits::MAX_PATH_BYTES {
        return Err(bad(&format!("{} bytes: paths are limited to {} bytes", root.len(), crate::limits::MAX_PATH_BYTES)));
    }
    let relative = root.strip_prefix('/').ok_or_else(|| bad("not an absolute path"))?;
    let relative = relative.strip_suffix('/').unwrap_or(relative);
    if relative.is_empty() {
        return Err(bad("`/` itself cannot be a snapshot"));
    }
    if relative.split('/').any(|c| c.is_empty() || c == "." || c == "..") || root.contains('\0') {
        return Err(bad("it must be an absolute folder path without `.`, `..` or `//`"));
    }
    Ok(relative)
}

/// The error for a component that could not be opened.
fn refusal(root: &str, at: &Path, e: OpenError) -> SyncError {
    let root = shown_str(root);
    let at = crate::untrusted::shown(at.as_os_str().as_encoded_bytes());
    match e {
        OpenError::Refused(Refused::Symlink) => SyncError::BadRequest(format!(
            "snapshot root \"{root}\": {at} is a symlink in the guest; a snapshot root must be a real folder path, with no symlink on the way"
        )),
        OpenError::Refused(why) => SyncError::BadRequest(format!("snapshot root \"{root}\": {at}: {why}")),
        OpenError::Missing => SyncError::NeverSynced(root),
        OpenError::Os(errno) => SyncError::Io { what: format!("opening {at}"), source: errno.into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &Path) -> Config {
        Config::new(prefix.join("state"), Some(prefix.join("guest")))
    }

    #[test]
    fn roots_are_created_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let first = SnapshotRoot::open(&config, "/a/b/project", true).unwrap();
        assert!(first.fresh);
        assert_eq!(first.path(), dir.path().join("guest/a/b/project"));
        assert!(first.walk_path().join(".").is_dir());
        let again = SnapshotRoot::open(&config, "/a/b/project/", true).unwrap();
        assert!(!again.fresh);
        assert!(matches!(SnapshotRoot::open(&config, "/a/b/other", false), Err(SyncError::NeverSynced(_))));
    }

    #[test]
    fn a_symlink_anywhere_on_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        SnapshotRoot::open(&config, "/p", true).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("guest/p/esc")).unwrap();
        for root in ["/p/esc", "/p/esc/deeper"] {
            match SnapshotRoot::open(&config, root, true) {
                Err(SyncError::BadRequest(m)) => assert!(m.contains("symlink"), "{m}"),
                other => panic!("{root}: {:?}", other.map(|r| r.path().to_path_buf())),
            }
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something was created outside");
    }

    #[test]
    fn unclean_roots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        for root in ["", "relative", "/", "/a/../b", "/a/./b", "/a//b", "/a/b\0"] {
            assert!(matches!(SnapshotRoot::open(&config, root, true), Err(SyncError::BadRequest(_))), "{root:?}");
        }
        let long = format!("/{}", "a/".repeat(3000));
        assert!(matches!(SnapshotRoot::open(&config, &long, true), Err(SyncError::BadRequest(_))));
    }
}
