//! Progress notifications for one tool call: sent only when the client asked
//! for them (a `progressToken` in the request), with the seconds the call
//! has taken as the progress (so it only grows) and a message saying what it
//! is doing: starting the VM, the command's pid, how much it has printed.
//!
//! One task per call sends them, in order, off the call's path (a slow
//! client never holds a command up); the call's result waits for that
//! queue to drain ([`Progress::finish`]), so a client sees every
//! notification of a call before its result.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{RequestContext, RoleServer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often a long call reports that it is still running.
pub const EVERY: Duration = Duration::from_secs(1);

/// What happened while reaching a VM, for the client's progress messages.
pub trait Watch: Send + Sync {
    /// Says `message` (the VM is being started, it is up), to the client and on stderr.
    fn say(&self, message: String);
    /// Tells the client only that the call is still under way (a boot takes a while).
    fn still(&self, message: String);
}

/// The progress reporter of one call.
pub struct Progress {
    token: Option<ProgressToken>,
    began: Instant,
    /// The last progress sent, in seconds: each one must be larger.
    last: Mutex<f64>,
    /// The sender's queue (`None` once finished, or without a token).
    queue: Mutex<Option<mpsc::UnboundedSender<ProgressNotificationParam>>>,
    /// The task that sends the queue's notifications, in order.
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl Progress {
    /// The reporter for the call `context` belongs to.
    pub fn new(context: &RequestContext<RoleServer>) -> Arc<Progress> {
        let token = context.meta.get_progress_token();
        let (queue, sender) = match &token {
            Some(_) => {
                let (tx, mut rx) = mpsc::unbounded_channel::<ProgressNotificationParam>();
                let peer = context.peer.clone();
                let sender = tokio::spawn(async move {
                    while let Some(param) = rx.recv().await {
                        if let Err(e) = peer.notify_progress(param).await {
                            tracing::debug!("cannot send a progress notification: {e}");
                        }
                    }
                });
                (Some(tx), Some(sender))
            }
            None => (None, None),
        };
        Arc::new(Progress { token, began: Instant::now(), last: Mutex::new(-1.0), queue: Mutex::new(queue), sender: Mutex::new(sender) })
    }

    /// Waits until every notification reported so far was sent; later
    /// reports are dropped. Called before the call's result goes out.
    pub async fn finish(&self) {
        drop(self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
        let sender = self.sender.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(sender) = sender {
            let _ = sender.await;
        }
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
        if let Some(queue) = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            let _ = queue.send(ProgressNotificationParam::new(token, progress).with_message(message));
        }
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
