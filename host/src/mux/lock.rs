//! One multiplexer per VM, and a way to stop it: a POSIX write lock on
//! `vms/NAME/mux.lock`, held for the multiplexer's whole life.
//!
//! The kernel releases the lock when its holder dies, and `F_GETLK` names the
//! holder's pid, so [`stop`] signals exactly the multiplexer that runs and
//! then waits for the lock: no pid file that could go stale or name another
//! process. (A POSIX lock also ends when its process closes any descriptor of
//! the file, so only the multiplexer itself opens it while holding it.)

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The lock held by a running multiplexer; released when dropped or at exit.
pub struct MuxLock {
    _file: File,
}

fn path(vm_dir: &Path) -> PathBuf {
    vm_dir.join("mux.lock")
}

/// A write lock on the whole file, or the request to wait for one.
fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value (start 0,
    // length 0 = to the end of the file).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Takes the lock in `vm_dir`; `None` when another multiplexer holds it.
pub fn try_acquire(vm_dir: &Path) -> io::Result<Option<MuxLock>> {
    try_acquire_file(&path(vm_dir))
}

/// Takes the lock of the daemon whose lock file is `lock` (other per-VM
/// daemons, as the network's, use the same kind of lock); `None` when
/// another process holds it.
pub fn try_acquire_file(lock: &Path) -> io::Result<Option<MuxLock>> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock)?;
    match fcntl(&file, FcntlArg::F_SETLK(&whole_file(libc::F_WRLCK as libc::c_short))) {
        Ok(_) => Ok(Some(MuxLock { _file: file })),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Stops VM `vm_dir`'s multiplexer if one runs, and returns once it has
/// exited. Best effort: a failure only means a multiplexer may outlive the
/// VM until its agent connection ends.
pub fn stop(vm_dir: &Path) {
    stop_file(&path(vm_dir));
}

/// Stops the daemon holding `lock`, if one does, and returns once it has exited.
pub fn stop_file(lock: &Path) {
    if let Err(e) = stop_holder(lock) {
        tracing::debug!("stopping the holder of {}: {e}", lock.display());
    }
}

/// Whether a process holds `lock` right now.
pub fn is_held(lock: &Path) -> bool {
    holder(lock).is_ok_and(|pid| pid.is_some())
}

fn holder(lock: &Path) -> io::Result<Option<(File, i32)>> {
    let file = match std::fs::OpenOptions::new().write(true).open(lock) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut holder = whole_file(libc::F_WRLCK as libc::c_short);
    fcntl(&file, FcntlArg::F_GETLK(&mut holder))?;
    Ok((holder.l_type != libc::F_UNLCK as libc::c_short).then_some((file, holder.l_pid)))
}

fn stop_holder(lock: &Path) -> io::Result<()> {
    let Some((file, pid)) = holder(lock)? else { return Ok(()) };
    kill(Pid::from_raw(pid), Signal::SIGTERM)?;
    // Waits until the kernel releases the dead daemon's lock.
    fcntl(&file, FcntlArg::F_SETLKW(&whole_file(libc::F_WRLCK as libc::c_short)))?;
    Ok(())
}
