//! hutch's own init: what runs as PID 1 in the default Debian image, in place
//! of systemd (which took ~20 s to boot under TCG). The initramfs copies this
//! very binary to `/run/hutch/hutch-agent` on the disk's root and
//! `switch_root`s to it; started as PID 1, `hutch-agent` becomes this init:
//!
//! 1. [`setup`]: mounts /proc, /sys, /dev (+ pts, shm), /run, /tmp's
//!    permissions; sets the host name; brings up `lo` (the network design
//!    needs no other interface);
//!    writes the VM's own `/etc/machine-id` ([`machine_id`]);
//! 2. [`user`]: gives the image's user `hutch` the host user's uid and gid
//!    (`hutch.uid=`/`hutch.gid=` on the kernel command line), so files it
//!    creates in the shared project belong to the host user; a host user that
//!    is root means commands run as root;
//! 3. [`grow`]: grows the root file system to its disk in the background
//!    when the VM's disk is bigger than the image's;
//! 4. starts the agent proper (a child: this binary again, with `--listen
//!    vsock://any:PORT`), restarts it when it dies, and reaps every orphan;
//! 5. [`power`]: on the ACPI power button (QMP `system_powerdown`, which
//!    `hutch down` sends) or SIGTERM/SIGUSR2/SIGPWR/SIGINT: stops every
//!    process, syncs, remounts the root read-only and powers off.
//!
//! Everything is synchronous: one thread waits for signals (SIGCHLD
//! included), and a thread per power-button device turns presses into
//! SIGPWR. The agent proper keeps its per-child waits; only this process
//! calls `waitpid(-1)`.

mod grow;
mod machine_id;
mod power;
mod setup;
mod user;

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The environment every command starts from (the agent passes its own on).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The longest pause before restarting an agent that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// An agent that ran this long was healthy: its next restart is immediate.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Whether this process is PID 1 (then `main` runs [`run`] instead of the agent).
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// What the kernel command line tells the init.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// The host user's uid and gid (`hutch.uid=`, `hutch.gid=`).
    pub ids: Option<(u32, u32)>,
    /// The vsock port the agent listens on (`hutch.port=`, default 8080).
    pub port: u32,
    /// The VM's machine id (`hutch.machine_id=`), when well formed.
    pub machine_id: Option<String>,
}

impl Cmdline {
    /// Parses `/proc/cmdline`'s text; unknown and malformed words are ignored.
    pub fn parse(text: &str) -> Cmdline {
        let value = |key: &str| text.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')).and_then(|v| v.parse().ok());
        let ids = match (value("hutch.uid"), value("hutch.gid")) {
            (Some(uid), Some(gid)) => Some((uid, gid)),
            (Some(uid), None) => Some((uid, uid)),
            _ => None,
        };
        let machine_id =
            text.split_whitespace().find_map(|w| w.strip_prefix("hutch.machine_id=")).filter(|id| machine_id::valid(id)).map(str::to_owned);
        Cmdline { ids, port: value("hutch.port").unwrap_or(hutch_proto::DEFAULT_VSOCK_PORT), machine_id }
    }
}

/// Logs a line on the console, where `hutch up` shows it when a boot fails.
fn log(message: impl std::fmt::Display) {
    eprintln!("hutch-init: {message}");
}

/// Runs the init; returns only if it cannot (then the kernel panics, and the
/// VM stops with `panic=-1`).
pub fn run() -> ExitCode {
    let signals = handled_signals();
    if let Err(e) = signals.thread_block() {
        log(format!("cannot block signals: {e}"));
    }
    setup::system();
    let cmdline = Cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    if let Some(id) = &cmdline.machine_id
        && let Err(e) = machine_id::install(id)
    {
        log(format!("writing /etc/machine-id: {e}"));
    }
    let exec_user = match cmdline.ids {
        Some((uid, gid)) if uid != 0 => match user::adopt(user::USER, uid, gid) {
            Ok(()) => Some(user::USER),
            Err(e) => {
                log(format!("commands run as root: cannot give {} uid {uid} gid {gid}: {e}", user::USER));
                None
            }
        },
        _ => None,
    };
    let grower = grow::start();
    power::watch_button();
    let mut agent = Agent { pid: None, started: Instant::now(), backoff: Duration::ZERO, restart_at: Some(Instant::now()) };
    loop {
        let now = Instant::now();
        if agent.restart_at.is_some_and(|at| at <= now) {
            agent.start(cmdline.port, exec_user);
        }
        let timeout = agent.restart_at.map(|at| at.saturating_duration_since(now));
        match wait_signal(&signals, timeout) {
            Some(Signal::SIGCHLD) | None => {
                for (pid, status) in reap() {
                    if Some(pid) == agent.pid {
                        agent.exited(status);
                    } else if Some(pid) == grower {
                        grow::finished(status);
                    }
                }
            }
            Some(signal) => {
                log(format!("{signal}: powering off"));
                power::shut_down(&signals);
            }
        }
    }
}

/// Signals the init handles (all blocked, taken with `sigtimedwait`).
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGPWR] {
        set.add(signal);
    }
    set
}

/// Waits for one of `set` (`None` on timeout).
fn wait_signal(set: &SigSet, timeout: Option<Duration>) -> Option<Signal> {
    let spec = timeout.map(|t| nix::libc::timespec { tv_sec: t.as_secs() as nix::libc::time_t, tv_nsec: t.subsec_nanos().into() });
    let spec_ptr = spec.as_ref().map_or(std::ptr::null(), |s| s as *const nix::libc::timespec);
    // SAFETY: `set` is a valid sigset, the info pointer may be null, and
    // `spec_ptr` is null or points at `spec`, alive for the call.
    let n = unsafe { nix::libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), spec_ptr) };
    Signal::try_from(n).ok()
}

/// Reaps every child that has exited, orphans included.
fn reap() -> Vec<(Pid, WaitStatus)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    reaped.push((pid, status));
                }
            }
        }
    }
}

/// The agent proper, as a child of the init.
struct Agent {
    pid: Option<Pid>,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
}

impl Agent {
    fn start(&mut self, port: u32, exec_user: Option<&str>) {
        self.restart_at = None;
        self.started = Instant::now();
        let exe = std::env::current_exe().unwrap_or_else(|_| "/run/hutch/hutch-agent".into());
        let mut cmd = Command::new(&exe);
        cmd.arg("--listen").arg(format!("vsock://any:{port}"));
        if let Some(user) = exec_user {
            cmd.arg("--exec-user").arg(user);
        }
        // A clean environment: the kernel's (TERM=linux, BOOT_IMAGE...) is not the user's.
        cmd.env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            // The guest is a throw-away VM: Claude Code accepts its
            // --dangerously-skip-permissions as root only when told so.
            .env("IS_SANDBOX", "1")
            .current_dir("/");
        // The agent must not see the init's blocked signals (std resets the
        // mask in the child), nor be PID 1's session: its own.
        cmd.process_group(0);
        match cmd.spawn() {
            Ok(child) => self.pid = Some(Pid::from_raw(child.id() as i32)),
            Err(e) => {
                log(format!("cannot start {}: {e}", exe.display()));
                self.schedule_restart();
            }
        }
    }

    fn exited(&mut self, status: WaitStatus) {
        log(format!("the agent stopped ({status:?}); restarting it"));
        self.pid = None;
        if self.started.elapsed() >= HEALTHY_RUN {
            self.backoff = Duration::ZERO;
        }
        self.schedule_restart();
    }

    fn schedule_restart(&mut self) {
        self.restart_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).max(Duration::from_millis(100)).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_gives_ids_and_port() {
        let cmdline = Cmdline::parse(
            "console=ttyS0 quiet hutch.root=auto hutch.uid=1000 hutch.gid=100 hutch.port=9000 hutch.machine_id=0123456789abcdef0123456789abcdef\n",
        );
        let id = Some("0123456789abcdef0123456789abcdef".to_owned());
        assert_eq!(cmdline, Cmdline { ids: Some((1000, 100)), port: 9000, machine_id: id });
        assert_eq!(Cmdline::parse("hutch.uid=501").ids, Some((501, 501)));
        let plain = Cmdline::parse("hutch.uid=x hutch.gid=1 hutch.uidx=3 hutch.machine_id=../etc/passwd");
        assert_eq!(plain, Cmdline { ids: None, port: hutch_proto::DEFAULT_VSOCK_PORT, machine_id: None });
    }
}
