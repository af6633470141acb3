//! How long the host waits for an agent, so a silent one (a hung guest, a
//! malicious agent that accepts and never answers) cannot hold a command.
//!
//! Two deadlines, each configurable (the environment variable wins over
//! the `[timeouts]` table of the configuration files):
//!
//! - **connect** (`HUTCH_CONNECT_TIMEOUT`, `[timeouts] connect`, 10 s):
//!   reaching the agent's socket, including the vsock proxy's answer;
//! - **call** (`HUTCH_CALL_TIMEOUT`, `[timeouts] call`, 30 s): each call
//!   that answers at once (`Info`, `ListSessions`, `SignalSession`,
//!   `Prepare`, a session's status), the start of one that streams (an
//!   exec's `started`, an attach's `attached`, a forward's `connected`),
//!   and each silence of a bulk stream (a sync's manifest, a diff) between
//!   two messages. The HTTP/2 handshake is part of the first call.
//!
//! What is never cut: a command's own run time (`exec`, `run`, `shell`,
//! the runtime hook), `attach`, `logs -f`, `forward`'s connections and
//! `wait`, which waits for a session's end on purpose.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The default for reaching an agent: a socket connect and the vsock
/// proxy's one-line answer take milliseconds; 10 s leaves room for a guest
/// under heavy emulation.
pub const CONNECT: Duration = Duration::from_secs(10);

/// The default for one call: the agent answers `Info` in well under a
/// millisecond, `Prepare` (mounts) and a session's start in a second on a
/// loaded TCG guest; 30 s is far beyond a working agent.
pub const CALL: Duration = Duration::from_secs(30);

/// The environment variable for [`Deadlines::connect`].
pub const CONNECT_ENV: &str = "HUTCH_CONNECT_TIMEOUT";
/// The environment variable for [`Deadlines::call`].
pub const CALL_ENV: &str = "HUTCH_CALL_TIMEOUT";

/// The deadlines in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Reaching the agent.
    pub connect: Duration,
    /// One call, a stream's start, a bulk stream's silence.
    pub call: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines { connect: CONNECT, call: CALL }
    }
}

static IN_FORCE: OnceLock<Deadlines> = OnceLock::new();

/// Where the deadlines come from when no command [`set`] them: installed
/// once by the binary (the configuration of the current directory), so
/// this low module need not know the configuration's.
static SOURCE: OnceLock<fn() -> Deadlines> = OnceLock::new();

/// The deadlines for this process: set once (by [`set`], from the
/// configuration a command loaded), else read on first use from the
/// [`source`] the binary installed (the environment and the configuration
/// files of the current directory), else the defaults.
pub fn current() -> Deadlines {
    *IN_FORCE.get_or_init(|| SOURCE.get().map_or_else(Deadlines::default, |source| source()))
}

/// Installs where [`current`] reads the deadlines on first use when no
/// command [`set`] them; the first call wins.
pub fn source(read: fn() -> Deadlines) {
    let _ = SOURCE.set(read);
}

/// Fixes the deadlines for this process (a command that loaded its
/// configuration anyway); the first call wins.
pub fn set(deadlines: Deadlines) {
    let _ = IN_FORCE.set(deadlines);
}

/// A silent agent: it did not answer in time.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{peer} did not answer {call} within {}", seconds(*after))]
pub struct Expired {
    /// Who did not answer ("VM web's agent", "the agent at unix:///…").
    pub peer: Arc<str>,
    /// What it was asked.
    pub call: &'static str,
    /// How long hutch waited.
    pub after: Duration,
}

impl Expired {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        format!(
            "the guest may be overloaded or its agent stuck (`hutch reset` restarts a VM); to wait longer, set {CALL_ENV} or `call` under [timeouts] in the configuration"
        )
    }
}

/// The deadline of one call to one agent.
#[derive(Clone, Debug)]
pub struct Deadline {
    peer: Arc<str>,
    after: Duration,
}

impl Deadline {
    /// The call deadline in force, for calls to `peer`.
    pub fn for_peer(peer: Arc<str>) -> Deadline {
        Deadline { peer, after: current().call }
    }

    /// `work`'s output, or [`Expired`] naming `call` when it takes longer
    /// than the deadline.
    pub async fn within<T>(&self, call: &'static str, work: impl Future<Output = T>) -> Result<T, Expired> {
        tokio::time::timeout(self.after, work).await.map_err(|_| self.expired(call))
    }

    /// The error for `call` having gone unanswered this long.
    pub fn expired(&self, call: &'static str) -> Expired {
        Expired { peer: self.peer.clone(), call, after: self.after }
    }

    /// How long it is.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// `30 s`, `1.5 s`, `500 ms`.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{} ms", d.as_millis()) } else { format!("{} s", d.as_secs_f64()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_call_expires_naming_who_and_what() {
        let deadline = Deadline { peer: "VM web's agent".into(), after: Duration::from_millis(20) };
        assert_eq!(deadline.within("Info", async { 7 }).await.unwrap(), 7);
        let err = deadline.within("Info", std::future::pending::<()>()).await.unwrap_err();
        assert_eq!(err.to_string(), "VM web's agent did not answer Info within 20 ms");
        assert!(err.hint().contains(CALL_ENV));
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
    }
}
