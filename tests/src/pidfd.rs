//! Waiting for processes that are not our children to exit, without polling:
//! a pidfd becomes readable when its process terminates.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// A handle on a process that reports its exit.
pub struct PidFd {
    fd: OwnedFd,
    /// The process id.
    pub pid: i32,
}

impl PidFd {
    /// Opens a pidfd for `pid`; `None` if the process is already gone.
    pub fn open(pid: i32) -> Option<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel just returned this descriptor to us.
        Some(PidFd { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) }, pid })
    }

    /// Waits up to `timeout` for the process to terminate; true if it did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => return false,
                Ok(_) => return true,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => panic!("poll pidfd: {e}"),
            }
        }
    }
}

/// The state letter of `pid` from /proc (R, S, Z, ...), or `None` if it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The parent pid of `pid` from /proc, or `None` if it is gone.
pub fn proc_parent(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The CPU time `pid` has used (user + system), in clock ticks, or `None`
/// if it is gone.
pub fn proc_cpu_ticks(pid: i32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The fields of `/proc/PID/stat` after the command name (state, parent
/// pid, ...). The name is in parentheses and may contain spaces, so the
/// split starts after its closing one.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}
