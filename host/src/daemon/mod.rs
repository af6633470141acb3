//! Host daemons: the long-lived processes hutch starts for a VM (QEMU,
//! vhost-device-vsock, Tart's `tart run`, the `--forward` forwarder, the
//! multiplexer) and must find again, from another hutch process, to stop them.
//!
//! A daemon is named by its log in the VM's folder (`NAME.log`), which it
//! keeps locked (`flock(2)`, exclusive) for its whole life:
//!
//! - [`Daemon::spawn`] starts it detached: its own session (a Ctrl-C aimed at
//!   hutch never reaches it), not hutch's child (a double fork: a long-lived
//!   hutch never holds it as a zombie), stdin from /dev/null, stdout and
//!   stderr appended to the log. Between fork and exec the child locks the
//!   log and reports its pid, which the spawner records in `NAME.pid`.
//! - "Is it still ours" ([`Daemon::running`]) is one non-blocking lock attempt
//!   on the log: the kernel drops the lock when the last descriptor of that
//!   open log closes, that is when the daemon (and anything that inherited its
//!   output) is gone, so a crash or a reboot leaves nothing that looks alive.
//!   The recorded pid is signalled only while the lock shows the daemon alive
//!   ([`Daemon::terminate`]), so hutch never signals a stranger that reused a
//!   pid. Nothing reads `/proc`: this works the same on macOS hosts.
//! - hutch's own daemons (the multiplexer) lock their log themselves
//!   ([`Daemon::claim`]), so that one started by hand is found and stopped the
//!   same way, and a second one knows to leave; they are started with
//!   [`Daemon::spawn_claiming`].
//! - [`Spawned::wait_until`] waits for a daemon to become ready, failing at
//!   once with its last words if it exits first; [`poll_until`] is the one
//!   poll-until-deadline loop for everything else.
//!
//! A new per-VM daemon is a name and a command:
//!
//! ```ignore
//! let virtiofsd = Daemon::new(vm_dir, "virtiofsd");
//! virtiofsd.spawn(cmd)?.wait_until(Duration::from_secs(10), |_| socket.exists())?;
//! // … and in stop:
//! virtiofsd.terminate(Duration::from_secs(5));
//! ```
//!
//! (A `flock` rather than a POSIX record lock, which `F_GETLK` would name the
//! holder of: a process drops its POSIX locks whenever it closes any
//! descriptor of the file, as shells do around redirections.)

mod poll;
mod spawn;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use poll::{poll_until, poll_until_async, retry_until_async};

/// How often [`Daemon`] looks at its lock or log while waiting.
const POLL: Duration = Duration::from_millis(10);

/// How long a daemon gets to die after SIGKILL before hutch stops waiting.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Why a daemon could not be started or did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The program does not exist.
    #[error("{program} is not installed or not in PATH")]
    NotFound {
        /// The program.
        program: String,
    },
    /// One of these already runs for the VM (its log is locked).
    #[error("{program} is already running for this VM (see {})", log.display())]
    AlreadyRunning {
        /// The program.
        program: String,
        /// Its log.
        log: PathBuf,
    },
    /// The program could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited before it was ready.
    #[error("{program} exited: {said}")]
    Exited {
        /// The program.
        program: String,
        /// The last line it wrote since it was started (or "nothing").
        said: String,
    },
    /// It was not ready in time (it still runs).
    #[error("{program} was not ready within {timeout:?}")]
    TimedOut {
        /// The program.
        program: String,
        /// How long hutch waited.
        timeout: Duration,
    },
}

/// One daemon of a VM, named by its log (`NAME.log`) and pid file
/// (`NAME.pid`) in the VM's folder. Cheap: it only holds the paths, so any
/// hutch process can make one to look at or stop a daemon another started.
#[derive(Clone, Debug)]
pub struct Daemon {
    name: String,
    log: PathBuf,
    pid_file: PathBuf,
}

impl Daemon {
    /// The daemon `name` of the VM whose folder is `vm_dir`.
    pub fn new(vm_dir: &Path, name: &str) -> Daemon {
        Daemon { name: name.to_owned(), log: vm_dir.join(format!("{name}.log")), pid_file: vm_dir.join(format!("{name}.pid")) }
    }

    /// Its log (stdout and stderr), which it keeps locked while it lives.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Starts `cmd` as this daemon (see the module docs). The caller may wait
    /// for it to be ready with [`Spawned::wait_until`].
    pub fn spawn(&self, cmd: Command) -> Result<Spawned, DaemonError> {
        self.start(cmd, true)
    }

    /// Starts `cmd`, a hutch daemon that calls [`Daemon::claim`] itself, as
    /// this daemon.
    pub fn spawn_claiming(&self, cmd: Command) -> Result<Spawned, DaemonError> {
        self.start(cmd, false)
    }

    /// Called by a hutch daemon itself: takes the lock and records this
    /// process's pid, for as long as the returned value lives. `None` when
    /// another instance holds it.
    pub fn claim(&self) -> std::io::Result<Option<Claim>> {
        let file = File::options().create(true).append(true).open(&self.log)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(e.into()),
        };
        self.record_pid(std::process::id())?;
        Ok(Some(Claim { _lock: lock }))
    }

    fn record_pid(&self, pid: u32) -> std::io::Result<()> {
        let tmp = self.pid_file.with_extension(format!("pid.{}.tmp", std::process::id()));
        std::fs::write(&tmp, format!("{pid}\n")).and_then(|()| std::fs::rename(&tmp, &self.pid_file))
    }

    fn start(&self, cmd: Command, lock: bool) -> Result<Spawned, DaemonError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        if self.running() {
            return Err(DaemonError::AlreadyRunning { program, log: self.log.clone() });
        }
        let _ = std::fs::remove_file(&self.pid_file);
        let offset = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let pid = spawn::detached(cmd, &self.log, lock).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DaemonError::NotFound { program: program.clone() },
            std::io::ErrorKind::WouldBlock => DaemonError::AlreadyRunning { program: program.clone(), log: self.log.clone() },
            _ => DaemonError::Spawn { program: program.clone(), source: e },
        })?;
        if lock {
            self.record_pid(pid).map_err(|source| DaemonError::Spawn { program: program.clone(), source })?;
        }
        Ok(Spawned { daemon: self.clone(), program, pid, offset, locked: lock })
    }

    /// Whether the daemon is alive: its log is locked.
    pub fn running(&self) -> bool {
        let Ok(file) = File::open(&self.log) else { return false };
        matches!(Flock::lock(file, FlockArg::LockSharedNonblock), Err((_, Errno::EWOULDBLOCK)))
    }

    /// The pid recorded for the daemon, while it is alive.
    pub fn pid(&self) -> Option<u32> {
        if !self.running() {
            return None;
        }
        std::fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }

    /// Sends SIGTERM and returns at once, when the daemon runs: several
    /// daemons told first stop together, and [`Daemon::terminate`] then
    /// only waits for each (a VM's helpers when it is deleted).
    pub fn tell_to_stop(&self) {
        if let Some(pid) = self.pid() {
            tracing::debug!("sending SIGTERM to {} ({pid})", self.name);
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }

    /// Waits until the daemon has exited; false if it still runs after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        poll_until(timeout, POLL, || (!self.running()).then_some(())).is_some()
    }

    /// Stops the daemon if it runs: SIGTERM, then SIGKILL after `grace`;
    /// returns once it has exited (or after a last wait).
    pub fn terminate(&self, grace: Duration) {
        self.signal_until_gone(&[(Signal::SIGTERM, grace), (Signal::SIGKILL, KILL_WAIT)], false);
    }

    /// Stops the daemon if it runs with SIGKILL at once, for one whose
    /// work is thrown away (the QEMU of a VM being deleted); returns once
    /// it has exited (or after a last wait).
    pub fn kill(&self) {
        self.signal_until_gone(&[(Signal::SIGKILL, KILL_WAIT)], false);
    }

    /// [`Daemon::terminate`] for the daemon's whole process group: it and
    /// the helpers it runs and waits for (a `qemu-img create` of a keeper's
    /// boot), which would otherwise outlive it. Daemons are group leaders
    /// (`setsid` at spawn); the VM daemons they start have groups of their own.
    pub fn terminate_group(&self, grace: Duration) {
        self.signal_until_gone(&[(Signal::SIGTERM, grace), (Signal::SIGKILL, KILL_WAIT)], true);
    }

    /// Sends each signal in turn, waiting up to its time for the daemon to
    /// exit before the next.
    fn signal_until_gone(&self, steps: &[(Signal, Duration)], group: bool) {
        for &(signal, wait) in steps {
            // The pid file is written just after the lock is taken: give a
            // daemon being started that instant.
            let Some(pid) =
                poll_until(Duration::from_secs(1), POLL, || if self.running() { self.pid().map(Some) } else { Some(None) }).flatten()
            else {
                return;
            };
            tracing::debug!("sending {signal} to {} ({pid})", self.name);
            // A daemon that is no group leader has no group of its own: then itself.
            if !group || kill(Pid::from_raw(-(pid as i32)), signal).is_err() {
                let _ = kill(Pid::from_raw(pid as i32), signal);
            }
            if self.wait_exit(wait) {
                return;
            }
        }
    }
}

/// Keeps a hutch daemon's own log (`log`: its stdout and stderr, which it
/// keeps locked) under `cap`, for as long as the returned future runs:
/// every second, once the log has grown past the cap, its content moves to
/// `NAME.log.1` (replacing the one before) and the log is emptied in
/// place. The file stays the same (its lock with it), and the daemon's
/// `O_APPEND` writes go on from its start. What the guest makes a daemon
/// log (connections, refusals) so fills at most twice the cap, plus a
/// second's worth; a line written between the copy and the emptying is
/// lost.
pub async fn bound_own_log(log: PathBuf, cap: crate::untrusted::Limit) {
    let mut old = log.clone().into_os_string();
    old.push(".1");
    let old = PathBuf::from(old);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !std::fs::metadata(&log).is_ok_and(|m| m.len() > cap.max) {
            continue;
        }
        let tmp = log.with_extension("log.1.tmp");
        let moved = std::fs::copy(&log, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &old))
            .and_then(|()| File::options().write(true).open(&log))
            .and_then(|file| file.set_len(0));
        if let Err(e) = moved {
            eprintln!("hutch: cannot keep {} small: {e}", log.display());
        }
    }
}

/// A hutch daemon's hold on its lock ([`Daemon::claim`]).
#[derive(Debug)]
pub struct Claim {
    _lock: Flock<File>,
}

/// A daemon just started by [`Daemon::spawn`] (it may be kept, and waited
/// for later: a caller can start one and do something else meanwhile).
#[derive(Debug)]
pub struct Spawned {
    daemon: Daemon,
    program: String,
    /// Its pid.
    pub pid: u32,
    /// Where its output starts in the log.
    offset: u64,
    /// Whether its lock was taken for it (else it claims it itself, later).
    locked: bool,
}

impl Spawned {
    /// What it wrote to its log since it was started.
    pub fn news(&self) -> String {
        let text = std::fs::read(&self.daemon.log).unwrap_or_default();
        String::from_utf8_lossy(text.get(self.offset as usize..).unwrap_or_default()).into_owned()
    }

    /// Whether it still runs: its lock, or until it has claimed it, its pid
    /// (just reported, not our child: no zombie, no reuse in that instant).
    fn alive(&self) -> bool {
        if self.locked { self.daemon.running() } else { kill(Pid::from_raw(self.pid as i32), None).is_ok() }
    }

    /// Waits until `ready` (given [`Spawned::news`]) says it is ready,
    /// failing at once if it exits first, or after `timeout`.
    pub fn wait_until(&self, timeout: Duration, mut ready: impl FnMut(&str) -> bool) -> Result<(), DaemonError> {
        let settled = poll_until(timeout, POLL, || {
            let news = self.news();
            if ready(&news) {
                Some(Ok(()))
            } else if !self.alive() {
                let said = news.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("nothing").to_owned();
                Some(Err(DaemonError::Exited { program: self.program.clone(), said }))
            } else {
                None
            }
        });
        settled.unwrap_or_else(|| Err(DaemonError::TimedOut { program: self.program.clone(), timeout }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_daemon_is_found_again_stopped_and_never_started_twice() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::new(dir.path(), "sleeper");
        assert!(!daemon.running());
        let spawned = daemon.spawn(sh("echo up; exec sleep 600")).unwrap();
        spawned.wait_until(Duration::from_secs(10), |news| news.contains("up")).unwrap();

        // Another hutch process sees the same daemon through the same paths.
        let again = Daemon::new(dir.path(), "sleeper");
        assert!(again.running());
        assert_eq!(again.pid(), Some(spawned.pid));
        assert!(matches!(again.spawn(sh("true")), Err(DaemonError::AlreadyRunning { .. })));

        again.terminate(Duration::from_secs(5));
        assert!(!daemon.running());
        assert_eq!(daemon.pid(), None);
        // Not our child (double fork): nothing for this process to reap.
        assert!(nix::sys::wait::waitpid(Pid::from_raw(spawned.pid as i32), Some(nix::sys::wait::WaitPidFlag::WNOHANG)).is_err());
    }

    #[test]
    fn a_claiming_daemon_is_found_and_stopped_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::new(dir.path(), "own");
        // This process claims it, as `hutch mux` does: a second claim fails.
        let claim = daemon.claim().unwrap().expect("free");
        assert!(daemon.running());
        assert_eq!(daemon.pid(), Some(std::process::id()));
        assert!(Daemon::new(dir.path(), "own").claim().unwrap().is_none());
        drop(claim);
        assert!(!daemon.running());

        // Spawned without a lock, it is alive until it claims (here: never).
        let spawned = daemon.spawn_claiming(sh("echo waiting; exec sleep 600")).unwrap();
        spawned.wait_until(Duration::from_secs(10), |news| news.contains("waiting")).unwrap();
        assert!(!daemon.running());
        let _ = kill(Pid::from_raw(spawned.pid as i32), Signal::SIGKILL);
        let err = spawned.wait_until(Duration::from_secs(60), |_| false).unwrap_err();
        assert!(matches!(err, DaemonError::Exited { .. }), "{err}");
    }

    #[test]
    fn exiting_before_ready_fails_at_once_with_its_last_words() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::new(dir.path(), "quitter");
        let spawned = daemon.spawn(sh("echo starting; echo 'cannot bind :80' >&2; exit 3")).unwrap();
        let err = spawned.wait_until(Duration::from_secs(60), |_| false).unwrap_err();
        assert!(matches!(&err, DaemonError::Exited { said, .. } if said == "cannot bind :80"), "{err}");
        assert!(!daemon.running());
        // A stale pid file names no process to signal.
        assert_eq!(daemon.pid(), None);
        daemon.terminate(Duration::from_millis(10));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_daemon_inherits_no_descriptor_but_its_stdio() {
        let dir = tempfile::tempdir().unwrap();
        // Inheritable, as a shell's `flock LOCK hutch …` hands hutch its lock.
        let held = std::fs::File::create(dir.path().join("held")).unwrap();
        // SAFETY: dup(2) of a descriptor we own; the copy is closed below.
        let leaked = unsafe { nix::libc::dup(std::os::fd::AsRawFd::as_raw_fd(&held)) };
        assert!(leaked > 2);
        let daemon = Daemon::new(dir.path(), "sleeper");
        let spawned = daemon.spawn(sh("echo up; exec sleep 600")).unwrap();
        spawned.wait_until(Duration::from_secs(10), |news| news.contains("up")).unwrap();
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", spawned.pid))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        daemon.terminate(Duration::from_secs(5));
        // SAFETY: closing our own copy.
        unsafe { nix::libc::close(leaked) };
        assert!(!fds.contains(&leaked.to_string()), "the daemon inherited descriptor {leaked}: {fds:?}");
    }

    #[test]
    fn a_missing_program_and_a_slow_one_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::new(dir.path(), "ghost");
        let err = daemon.spawn(Command::new("/nonexistent/hutch-no-such-program")).unwrap_err();
        assert!(matches!(err, DaemonError::NotFound { .. }), "{err}");

        let slow = Daemon::new(dir.path(), "slow");
        let spawned = slow.spawn(sh("exec sleep 600")).unwrap();
        let err = spawned.wait_until(Duration::from_millis(50), |_| false).unwrap_err();
        assert!(matches!(err, DaemonError::TimedOut { .. }), "{err}");
        slow.terminate(Duration::from_secs(5));
        assert!(!slow.running());
    }
}
