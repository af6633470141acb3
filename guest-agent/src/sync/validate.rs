//! The receiver's distrust: every path the host names is checked here, and
//! every folder is opened one component at a time without following symlinks,
//! so nothing a Sync says can reach outside the snapshot root.
//!
//! A path is a list of plain names below the root: no leading `/`, no `.` or
//! `..`, no empty component. Folders are opened with
//! `openat(parent, name, O_DIRECTORY | O_NOFOLLOW)`, so a symlink anywhere on
//! the way (pointing out of the snapshot or inside it) fails the open instead
//! of being followed; the last component is created or replaced with `*at`
//! calls relative to that folder, again never following a symlink.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use crate::nofollow::NotOpened;

/// Why the agent refused an entry or a path.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path is longer than any the host can have.
    #[error("a path of {0} bytes: paths are limited to {max} bytes", max = crate::limits::MAX_PATH_BYTES)]
    TooLong(usize),
    /// The path starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// A component is `..`.
    #[error("`..` component")]
    DotDot,
    /// A component is `.` or empty (`a//b`).
    #[error("`.` or empty component")]
    Dot,
    /// A NUL byte, which no path can hold.
    #[error("a NUL byte")]
    Nul,
    /// An intermediate component is a symlink.
    #[error("passes through a symlink")]
    Symlink,
    /// An intermediate component is neither a folder nor missing.
    #[error("passes through something that is not a folder")]
    NotAFolder,
    /// A tar hard link.
    #[error("hard links are not accepted")]
    HardLink,
    /// A device, fifo or other special file.
    #[error("{0} entries are not accepted")]
    Special(&'static str),
    /// A symlink without a target.
    #[error("symlink without a target")]
    NoTarget,
    /// The entry exists as another kind of thing that was not deleted first.
    #[error("exists and is {0}")]
    Occupied(&'static str),
}

/// The components of a relative path, or why it is refused. A single
/// trailing `/` (as tar writes for folders) is allowed.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, Refused> {
    if path.len() > crate::limits::MAX_PATH_BYTES {
        return Err(Refused::TooLong(path.len()));
    }
    let path = path.strip_suffix(b"/").unwrap_or(path);
    if path.is_empty() {
        return Err(Refused::Empty);
    }
    if path.starts_with(b"/") {
        return Err(Refused::Absolute);
    }
    let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    for part in &parts {
        match *part {
            b".." => return Err(Refused::DotDot),
            b"." | b"" => return Err(Refused::Dot),
            _ if part.contains(&0) => return Err(Refused::Nul),
            _ => {}
        }
    }
    Ok(parts)
}

/// The snapshot root, opened once, and the most recently opened folder below
/// it (entries arrive sorted, so consecutive ones usually share a parent).
pub struct SafeRoot {
    fd: OwnedFd,
    cached: Option<(Vec<u8>, OwnedFd)>,
}

/// What opening a path's parent failed on.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path is refused.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// A folder on the way does not exist (only when not creating).
    #[error("missing")]
    Missing,
    /// The OS failed.
    #[error("{0}")]
    Os(#[from] Errno),
}

impl SafeRoot {
    /// The snapshot root, already opened without following symlinks
    /// (`super::root`).
    pub fn new(fd: OwnedFd) -> SafeRoot {
        SafeRoot { fd, cached: None }
    }

    /// The root folder itself.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the folder holding the last of `parts`, walking from the root
    /// without following symlinks; missing folders are created (mode 0755)
    /// when `create` is set.
    pub fn parent(&mut self, parts: &[&[u8]], create: bool) -> Result<BorrowedFd<'_>, OpenError> {
        let dirs = &parts[..parts.len().saturating_sub(1)];
        if dirs.is_empty() {
            return Ok(self.fd.as_fd());
        }
        let key = dirs.join(&b'/');
        if self.cached.as_ref().is_none_or(|(k, _)| *k != key) {
            self.cached = None;
            let mut fd = open_dir(self.fd.as_fd(), dirs[0], create)?;
            for name in &dirs[1..] {
                fd = open_dir(fd.as_fd(), name, create)?;
            }
            self.cached = Some((key, fd));
        }
        Ok(self.cached.as_ref().map_or(self.fd.as_fd(), |(_, fd)| fd.as_fd()))
    }

    /// Opens the folder at `parts` itself (no creation).
    pub fn dir(&mut self, parts: &[&[u8]]) -> Result<OwnedFd, OpenError> {
        let Some(name) = parts.last() else { return Err(Refused::Empty.into()) };
        let parent = self.parent(parts, false)?;
        open_dir(parent, name, false)
    }

    /// Forgets the cached folder (after deletions, which may remove it).
    pub fn forget(&mut self) {
        self.cached = None;
    }
}

/// Opens `name` in `parent` as a folder, refusing symlinks and non-folders
/// ([`crate::nofollow`], with this module's refusals).
pub fn open_dir(parent: BorrowedFd<'_>, name: &[u8], create: bool) -> Result<OwnedFd, OpenError> {
    let refusal = |e| match e {
        NotOpened::Symlink => Refused::Symlink.into(),
        NotOpened::NotAFolder => Refused::NotAFolder.into(),
        NotOpened::Missing => OpenError::Missing,
        NotOpened::Os(errno) => OpenError::Os(errno),
    };
    match crate::nofollow::open_dir(parent, name, false) {
        // A folder a Sync creates (on the way to an entry, or to the
        // snapshot root) belongs to the user commands run as.
        Err(NotOpened::Missing) if create => {
            let fd = crate::nofollow::open_dir(parent, name, true).map_err(refusal)?;
            super::owner::own(fd.as_fd())?;
            Ok(fd)
        }
        other => other.map_err(refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(components(b"a/b/c").unwrap(), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(components(b"dir/").unwrap(), vec![&b"dir"[..]]);
        assert!(matches!(components(b""), Err(Refused::Empty)));
        assert!(matches!(components(b"/etc/passwd"), Err(Refused::Absolute)));
        assert!(matches!(components(b"a/../../x"), Err(Refused::DotDot)));
        assert!(matches!(components(b".."), Err(Refused::DotDot)));
        assert!(matches!(components(b"./a"), Err(Refused::Dot)));
        assert!(matches!(components(b"a//b"), Err(Refused::Dot)));
        assert!(matches!(components(b"a/b\0c"), Err(Refused::Nul)));
        assert!(components(&[b'a'; 4096]).is_ok());
        assert!(matches!(components(&[b'a'; 4097]), Err(Refused::TooLong(4097))));
    }
}
