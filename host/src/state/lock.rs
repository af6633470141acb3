//! One lifecycle operation per VM at a time: `flock(2)` on `vms/NAME/lock`.
//!
//! The kernel drops the lock when the holder dies, so a crashed `hutch up`
//! never leaves a stale lock behind. `hutch exec` takes no lock: it only reads
//! the record, which is replaced atomically.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::StateError;

/// An exclusive lock on one VM, held until dropped.
pub struct VmLock {
    _lock: Flock<File>,
}

impl VmLock {
    /// Takes the lock in `vm_dir`, waiting for another hutch that holds it.
    pub fn acquire(vm_dir: &Path) -> Result<VmLock, StateError> {
        let path = vm_dir.join("lock");
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(StateError::io("opening", &path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(VmLock { _lock: lock }),
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                eprintln!("hutch: waiting for another hutch working on this VM ({})", vm_dir.display());
                let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io {
                    what: "locking",
                    path,
                    source: e.into(),
                })?;
                Ok(VmLock { _lock: lock })
            }
            Err((_, e)) => Err(StateError::Io { what: "locking", path, source: e.into() }),
        }
    }

    /// Takes the lock in `vm_dir` if nobody holds it; `None` at once if
    /// someone does (a warm pool's keeper booting the VM, a run taking it).
    pub fn try_acquire(vm_dir: &Path) -> Result<Option<VmLock>, StateError> {
        let path = vm_dir.join("lock");
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(StateError::io("opening", &path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(VmLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(StateError::Io { what: "locking", path, source: e.into() }),
        }
    }
}
