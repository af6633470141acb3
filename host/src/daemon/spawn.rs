//! The fork-and-exec of [`super::Daemon::spawn`]: a double fork into a new
//! session, the log locked and the daemon's pid reported before exec.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::libc;

/// How long the child retries the log's lock: someone checking whether the
/// daemon runs holds a shared lock for an instant; a daemon holds it for good.
const LOCK_TRIES: u32 = 100;
const LOCK_RETRY: Duration = Duration::from_millis(2);

/// Starts `cmd` detached with stdout and stderr appended to `log`, which it
/// keeps locked while it lives when `lock` (else it locks it itself);
/// returns its pid. A held lock is `ErrorKind::WouldBlock`; a missing
/// program `ErrorKind::NotFound`.
pub fn detached(mut cmd: Command, log: &Path, lock: bool) -> std::io::Result<u32> {
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let (mut report_read, report_write) = cloexec_pipe()?;
    let report = report_write.as_raw_fd();
    // SAFETY: runs in the forked child, which has one thread, and makes only
    // async-signal-safe calls (fork, _exit, setsid, flock, nanosleep, getpid,
    // write); nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            // The child leaves at once; its own child, adopted by init (or the
            // nearest subreaper), goes on to become the daemon.
            if let nix::unistd::ForkResult::Parent { .. } = nix::unistd::fork()? {
                libc::_exit(0);
            }
            nix::unistd::setsid()?;
            if lock {
                lock_stdout()?;
            }
            // The pid as 4 raw bytes; the pipe closes itself at exec.
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(report, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
            inherit_only_stdio();
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // Our copies of the log and of the pipe's write end: the lock must belong
    // to the daemon alone, and the pipe must reach EOF.
    drop(cmd);
    drop(report_write);
    // std returns once the daemon's exec succeeded (or with its error); the
    // intermediate child has left by then.
    spawned?.wait()?;
    let mut pid = [0u8; 4];
    report_read.read_exact(&mut pid)?;
    u32::try_from(i32::from_ne_bytes(pid)).map_err(|_| std::io::Error::other("the daemon reported no pid"))
}

/// Marks every descriptor above stderr close-on-exec, so the daemon gets
/// its stdin, stdout and stderr and nothing else hutch was given. A
/// descriptor hutch inherited and does not know of would otherwise live as
/// long as the VM: `flock LOCK hutch up` left LOCK locked until the VM
/// stopped, and a terminal or pipe held open by QEMU keeps its reader
/// waiting. Async-signal-safe.
fn inherit_only_stdio() {
    #[cfg(target_os = "linux")]
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets descriptor flags.
    if unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) } == 0 {
        return;
    }
    // Kernels before 5.11 and other systems: one fcntl per possible descriptor.
    // SAFETY: sysconf and fcntl(F_SETFD) touch no memory of ours.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(0, 1 << 16) as libc::c_int;
    for fd in 3..max {
        // SAFETY: as above; a descriptor that is not open just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Takes the exclusive lock on fd 1 (the log), retrying briefly while a
/// reader holds a shared one. Async-signal-safe.
fn lock_stdout() -> std::io::Result<()> {
    for _ in 0..LOCK_TRIES {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(1, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::WouldBlock {
            return Err(error);
        }
        let pause = libc::timespec { tv_sec: 0, tv_nsec: LOCK_RETRY.as_nanos() as libc::c_long };
        // SAFETY: nanosleep with a valid timespec and no remainder.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
    Err(std::io::ErrorKind::WouldBlock.into())
}

/// A pipe whose ends close on exec, as a reader `File` and the write end.
#[cfg(not(target_os = "macos"))]
fn cloexec_pipe() -> std::io::Result<(File, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(read), write))
}

/// macOS has no pipe2(2): pipe(2), then FD_CLOEXEC on both ends (no other
/// thread of hutch forks meanwhile). Not compiled on this project's Linux
/// machines.
#[cfg(target_os = "macos")]
fn cloexec_pipe() -> std::io::Result<(File, OwnedFd)> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let (read, write) = nix::unistd::pipe()?;
    for fd in [&read, &write] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((File::from(read), write))
}
