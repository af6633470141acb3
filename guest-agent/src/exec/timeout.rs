//! A process group's time limit (`Start.timeout_ms`): SIGTERM when it is up,
//! SIGKILL [`TIMEOUT_KILL_GRACE`] later, for a plain exec and a session alike.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::time::{Instant, sleep_until};

/// After a timeout's SIGTERM, how long the group has before SIGKILL.
pub const TIMEOUT_KILL_GRACE: Duration = Duration::from_secs(2);

/// The steps still to take against one process group.
pub struct Timeout {
    term_at: Option<Instant>,
    kill_at: Option<Instant>,
    timed_out: bool,
}

impl Timeout {
    /// A limit of `limit` from `started`; none at all for `None`.
    pub fn new(started: Instant, limit: Option<Duration>) -> Timeout {
        Timeout { term_at: limit.map(|t| started + t), kill_at: None, timed_out: false }
    }

    /// Whether the limit was reached.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Waits for the next step and takes it on group `pgid`; never resolves
    /// without a limit, or once both steps are taken.
    pub async fn step(&mut self, pgid: i32) {
        tokio::select! {
            () = sleep_until_opt(self.term_at) => {
                self.timed_out = true;
                self.term_at = None;
                self.kill_at = Some(Instant::now() + TIMEOUT_KILL_GRACE);
                signal(pgid, Signal::SIGTERM);
            }
            () = sleep_until_opt(self.kill_at) => {
                self.kill_at = None;
                signal(pgid, Signal::SIGKILL);
            }
        }
    }
}

fn signal(pgid: i32, signal: Signal) {
    if let Err(e) = killpg(Pid::from_raw(pgid), signal) {
        tracing::debug!(pgid, "killpg {signal} failed: {e}");
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
