//! The `tart run` process hutch owns: started detached (its own session, so
//! Ctrl-C aimed at hutch never reaches it and it outlives hutch), logging to
//! the VM's state folder, and found again through a lock on that log.
//!
//! The child takes an exclusive `flock(2)` on its log between fork and exec.
//! The lock belongs to the open log (shared by the child's stdout and
//! stderr), survives exec, and vanishes when the last descriptor of it closes,
//! that is when `tart run` and anything that inherited its output are gone. So
//! "is our `tart run` still running" is one non-blocking lock attempt on the
//! log: no pid file that can go stale, no reused pid, no `tart` command.
//! (POSIX record locks would also name the holder's pid, but a process drops
//! them whenever it closes any descriptor of the file, as shells do around
//! redirections.)

use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::backend::tool::Tool;
use crate::backend::{BackendError, output_to_log};

/// Starts `tart` (`cmd`) detached with stdout/stderr appended to `log`, which
/// it keeps locked while it lives. Returns its pid.
pub fn spawn(tool: &Tool, mut cmd: Command, log: &Path) -> Result<u32, BackendError> {
    if running(log) {
        return Err(BackendError::Boot("a `tart run` for this VM is already running".into()));
    }
    output_to_log(&mut cmd, log)?;
    // SAFETY: runs between fork and exec; setsid and flock are
    // async-signal-safe and nothing here allocates.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            // Blocking: a concurrent `running` check holds a shared lock for
            // an instant; a live `tart run` of this VM was ruled out above.
            let lock = Flock::lock(File::from_raw_fd(1), FlockArg::LockExclusive).map_err(|(_, e)| e)?;
            // Neither unlock nor close: the lock is the exec'd program's now.
            std::mem::forget(lock);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| tool.spawn_error(e))?;
    // Reaped by init once hutch exits; hutch never waits on it.
    Ok(child.id())
}

/// Whether the `tart run` that logs to `log` is alive.
pub fn running(log: &Path) -> bool {
    let Ok(file) = File::open(log) else { return false };
    matches!(Flock::lock(file, FlockArg::LockSharedNonblock), Err((_, Errno::EWOULDBLOCK)))
}

/// Waits until the `tart run` logging to `log` has exited; false on timeout.
pub fn wait_exit(log: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while running(log) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Stops the `tart run` `pid` logging to `log` with SIGTERM, then SIGKILL
/// after `grace`. The pid is signalled only while the lock shows it alive.
pub fn terminate(log: &Path, pid: u32, grace: Duration) {
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        if !running(log) {
            return;
        }
        let _ = kill(Pid::from_raw(pid as i32), signal);
        if wait_exit(log, grace) {
            return;
        }
    }
}
