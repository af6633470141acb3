//! Who owns what a Sync writes: the user commands run as (`--exec-user`),
//! so a command can edit its `--ro` snapshot as it could the shared
//! project; nothing changes when commands run as the agent's own user.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::unistd::{Gid, Uid, fchown, fchownat};

fn ids() -> Option<(Uid, Gid)> {
    crate::exec::user::get().map(|u| (Uid::from_raw(u.uid), Gid::from_raw(u.gid)))
}

/// Gives the open file or folder `fd` to the command user.
pub fn own(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    match ids() {
        Some((uid, gid)) => fchown(fd, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// Gives `name` in `parent` to the command user, never following a symlink.
pub fn own_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    match ids() {
        Some((uid, gid)) => fchownat(parent, name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW),
        None => Ok(()),
    }
}
