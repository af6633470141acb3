//! Opening folders one name at a time without following symlinks: how the
//! agent reaches a path below a folder it trusts (a snapshot root, a
//! workspace) when something untrusted (a Sync, the guest) may have put a
//! symlink on the way.

use std::os::fd::{BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};

/// Why a folder could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum NotOpened {
    /// It is a symlink (never followed).
    Symlink,
    /// It is something other than a folder.
    NotAFolder,
    /// It does not exist (and was not to be created).
    Missing,
    /// The OS failed.
    Os(Errno),
}

/// Opens `name` in `parent` as a folder, refusing symlinks and non-folders;
/// a missing one is created (mode 0755) when `create` is set.
pub fn open_dir(parent: BorrowedFd<'_>, name: &[u8], create: bool) -> Result<OwnedFd, NotOpened> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    match openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) if create => {
            match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(NotOpened::Os(e)),
            }
            openat(parent, name, flags, Mode::empty()).map_err(|e| classify(parent, name, e))
        }
        Err(e) => Err(classify(parent, name, e)),
    }
}

/// Names the refusal: Linux says ENOTDIR (or ELOOP) for a symlink opened
/// with `O_DIRECTORY | O_NOFOLLOW`, so look at what is there.
fn classify(parent: BorrowedFd<'_>, name: &[u8], e: Errno) -> NotOpened {
    match e {
        Errno::ELOOP | Errno::ENOTDIR => {
            let st = nix::sys::stat::fstatat(parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
            let symlink = st.is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK);
            if symlink || e == Errno::ELOOP { NotOpened::Symlink } else { NotOpened::NotAFolder }
        }
        Errno::ENOENT => NotOpened::Missing,
        e => NotOpened::Os(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn folders_open_and_symlinks_and_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let base = std::fs::File::open(dir.path()).unwrap();
        let base = base.as_fd();
        assert!(open_dir(base, b"real", false).is_ok());
        assert_eq!(open_dir(base, b"link", true).err(), Some(NotOpened::Symlink));
        assert_eq!(open_dir(base, b"file", true).err(), Some(NotOpened::NotAFolder));
        assert_eq!(open_dir(base, b"new", false).err(), Some(NotOpened::Missing));
        assert!(open_dir(base, b"new", true).is_ok());
        assert!(dir.path().join("new").is_dir());
    }
}
