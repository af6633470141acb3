//! Progress notifications for one tool call: sent only when the client asked
//! for them (a `progressToken` in the request), with the seconds the call
//! has taken as the progress (so it only grows) and a message saying what it
//! is doing: starting the VM, the command's pid, how much it has printed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext, RoleServer};

use super::vm::Watch;

/// How often a long call reports that it is still running.
pub const EVERY: Duration = Duration::from_secs(1);

/// The progress reporter of one call.
pub struct Progress {
    peer: Peer<RoleServer>,
    token: Option<ProgressToken>,
    began: Instant,
    /// The last progress sent, in seconds: each one must be larger.
    last: Mutex<f64>,
}

impl Progress {
    /// The reporter for the call `context` belongs to.
    pub fn new(context: &RequestContext<RoleServer>) -> Arc<Progress> {
        Arc::new(Progress {
            peer: context.peer.clone(),
            token: context.meta.get_progress_token(),
            began: Instant::now(),
            last: Mutex::new(-1.0),
        })
    }

    /// Sends `message` as the next notification (in the background: a slow
    /// client never holds the call up). Nothing without a progress token.
    pub fn report(&self, message: String) {
        let Some(token) = self.token.clone() else { return };
        let progress = {
            let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Milliseconds, and never the same value twice.
            let now = (self.began.elapsed().as_millis() as f64 / 1000.0).max(*last + 0.001);
            *last = now;
            now
        };
        let peer = self.peer.clone();
        tokio::spawn(async move {
            let param = ProgressNotificationParam::new(token, progress).with_message(message);
            if let Err(e) = peer.notify_progress(param).await {
                tracing::debug!("cannot send a progress notification: {e}");
            }
        });
    }

    /// Seconds since the call began, for messages.
    pub fn seconds(&self) -> u64 {
        self.began.elapsed().as_secs()
    }
}

impl Watch for Progress {
    fn say(&self, message: String) {
        eprintln!("hutch: {message}");
        self.report(message);
    }

    fn still(&self, message: String) {
        self.report(message);
    }
}
