//! How a process the agent runs ends, whoever owns it: a plain exec driven
//! on its stream (`stream`) or a session kept for any client (`kept`,
//! `attach`).
//!
//! Its output pumps are drained for up to [`DRAIN_GRACE`] once the main
//! process exits, then cut; its end is reported as an `Exited` message, or a
//! start that failed as `StartFailed`; the tasks serving it are aborted when
//! their owner goes ([`AbortOnDrop`]). This file is below every other part of
//! `exec` that runs processes and imports none of them.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecResponse, Exited, StartFailed, exited};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::output::{PumpEnd, Responses};
use super::spawn::StartFailure;

/// How long to wait, after the main process exits, for its stdout/stderr to
/// reach EOF before cutting them (a background job may hold them open).
pub const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What draining the output pumps found.
pub(super) struct Drained {
    /// The grace ran out before every pump reached EOF.
    pub(super) cut: bool,
    /// A pump found the client gone.
    pub(super) client_gone: bool,
}

/// Waits for every pump to finish; raises `cut` once the grace has passed.
pub(super) async fn drain(pumps: &mut JoinSet<PumpEnd>, cut: &watch::Sender<bool>) -> Drained {
    let grace = tokio::time::sleep(DRAIN_GRACE);
    tokio::pin!(grace);
    let mut result = Drained { cut: false, client_gone: false };
    let mut cut_sent = false;
    loop {
        tokio::select! {
            joined = pumps.join_next() => match joined {
                None => return result,
                Some(Ok(PumpEnd::Eof)) => {}
                Some(Ok(PumpEnd::Cut)) => result.cut = true,
                Some(Ok(PumpEnd::ClientGone)) => result.client_gone = true,
                Some(Ok(PumpEnd::Failed(e))) => tracing::warn!("reading child output failed: {e}"),
                Some(Err(e)) => tracing::warn!("output pump panicked: {e}"),
            },
            _ = &mut grace, if !cut_sent => {
                cut_sent = true;
                let _ = cut.send(true);
            }
        }
    }
}

/// The `Exited` a main process that ended with `status` is reported with
/// (its `git_stamp` is left for the caller).
pub(super) fn exited_message(status: ExitStatus, timed_out: bool, duration: Duration, output_cut: bool) -> Exited {
    let (status_field, signal_name) = match (status.code(), status.signal()) {
        (Some(code), _) => (exited::Status::Code(code), String::new()),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig).map(|s| s.as_str().trim_start_matches("SIG").to_owned()).unwrap_or_default();
            (exited::Status::Signal(sig as u32), name)
        }
        (None, None) => (exited::Status::Code(255), String::new()),
    };
    Exited {
        status: Some(status_field),
        signal_name,
        core_dumped: status.core_dumped(),
        timed_out,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        output_cut,
        git_stamp: String::new(),
    }
}

/// Answers a `Start` that could not start anything with `StartFailed`.
pub(super) async fn send_failure(responses: &Responses, failure: StartFailure) {
    tracing::debug!("start failed: {failure}");
    let failed = StartFailed { error: failure.kind() as i32, message: failure.to_string() };
    let _ = responses.send(Ok(response(Kind::StartFailed(failed)))).await;
}

fn response(kind: Kind) -> ExecResponse {
    ExecResponse { kind: Some(kind) }
}

/// Aborts the task when the session ends, whichever way it ends.
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
