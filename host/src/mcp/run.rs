//! One command in the guest for a tool: an Exec stream whose output is kept
//! within caps ([`super::capture`]), that reports progress while it runs and
//! that ends when the client cancels the call.
//!
//! Every tool that acts in the guest (`exec`, and the file and search tools,
//! which run the guest's own `sh`, `dd`, `stat` and `rg` as the user commands
//! run as) goes through here, so each has the same bounds: the agent's
//! `timeout_ms`, and a deadline of hutch's own beyond it for an agent that
//! never reports the end.
//!
//! A cancelled call ends its command as Ctrl-C does for `hutch exec`:
//! SIGINT to the process group, then, if it is still there after
//! [`CANCEL_GRACE`], SIGKILL, and the stream is dropped (which makes the
//! agent kill the group and reap it in any case).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecRequest, Exited, SignalRequest, Start, StartFailed, StdinMode, exec_request};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::capture::{Capture, Captured, Keep};
use super::progress::{self, Progress};
use crate::transport::{CallError, Client};

/// After SIGINT to a cancelled command's group, how long it has before SIGKILL.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How long past its timeout hutch waits for the agent to report a
/// command's end before giving up on it (the agent kills it at the timeout,
/// SIGKILL 2 s later).
const NO_ANSWER_GRACE: Duration = Duration::from_secs(10);
/// Stdin is sent in chunks of this size (the agent's queue holds 8).
const STDIN_CHUNK: usize = 64 * 1024;
/// Requests that may wait to be sent.
const REQUEST_QUEUE: usize = 8;

/// What to run.
#[derive(Clone, Debug)]
pub struct Command {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables added to the guest's environment.
    pub env: HashMap<String, String>,
    /// Working directory in the guest (empty: the agent's default).
    pub cwd: String,
    /// Bytes for its stdin; `None`: /dev/null.
    pub stdin: Option<Bytes>,
    /// The agent kills the group after this long.
    pub timeout: Duration,
    /// Bytes kept of stdout.
    pub cap: usize,
    /// Bytes kept of stderr.
    pub err_cap: usize,
    /// Which part of an over-long output to keep.
    pub keep: Keep,
    /// The label the agent logs it with.
    pub tag: String,
}

/// How a command ended.
#[derive(Debug)]
pub enum End {
    /// It ran and ended (killed by its timeout included).
    Exited(Exited),
    /// It never started (not found, bad working directory…).
    StartFailed(StartFailed),
    /// The client cancelled the call; the group was signalled and the stream dropped.
    Cancelled,
    /// A command whose output is kept from its start ([`Keep::Head`]) wrote
    /// more than the cap: hutch stopped reading and the command was killed,
    /// as `| head` would end it.
    Cut,
}

/// A finished command.
#[derive(Debug)]
pub struct Ran {
    /// How it ended.
    pub end: End,
    /// What was kept of its stdout.
    pub stdout: Captured,
    /// What was kept of its stderr.
    pub stderr: Captured,
    /// Wall time as hutch saw it.
    pub took: Duration,
}

/// Why hutch does not know how a command ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The call failed or the connection broke.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The agent did not report the end long after the timeout.
    #[error("the agent did not report the end of the command {0:?} after its timeout; hutch gave up on it")]
    NoAnswer(Duration),
}

impl RunError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            RunError::Call(e) => Some(e.hint()),
            RunError::NoAnswer(_) => Some("check the VM (`hutch ping`); `hutch reset` starts it over".into()),
        }
    }
}

/// Runs `command` on the agent behind `client` until it ends, `cancel` is
/// cancelled, or the agent stops answering.
pub async fn run(client: &mut Client, command: &Command, progress: &Progress, cancel: &CancellationToken) -> Result<Ran, RunError> {
    let began = Instant::now();
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let start = Start {
        argv: command.argv.clone(),
        env: command.env.clone(),
        cwd: command.cwd.clone(),
        tty: None,
        timeout_ms: u64::try_from(command.timeout.as_millis()).unwrap_or(u64::MAX).max(1),
        stdin: if command.stdin.is_some() { StdinMode::StdinPipe } else { StdinMode::StdinNull } as i32,
        tag: command.tag.clone(),
        session: None,
    };
    let _ = tx.send(request(exec_request::Kind::Start(start))).await;
    if let Some(data) = command.stdin.clone() {
        let stdin_tx = tx.clone();
        tokio::spawn(async move {
            for offset in (0..data.len()).step_by(STDIN_CHUNK) {
                let chunk = data.slice(offset..data.len().min(offset + STDIN_CHUNK));
                if stdin_tx.send(request(exec_request::Kind::Stdin(chunk))).await.is_err() {
                    return;
                }
            }
            let _ = stdin_tx.send(request(exec_request::Kind::CloseStdin(Default::default()))).await;
        });
    }
    let mut responses = client.exec(ReceiverStream::new(rx)).await.map_err(CallError::from_status)?.into_inner();

    let mut stdout = Capture::new(command.cap, command.keep);
    let mut stderr = Capture::new(command.err_cap, command.keep);
    let mut ticks = tokio::time::interval_at(began + progress::EVERY, progress::EVERY);
    let mut give_up = began + command.timeout + NO_ANSWER_GRACE;
    let mut cancelled = false;
    let end = loop {
        tokio::select! {
            message = responses.next() => match message {
                Some(Ok(message)) => match message.kind {
                    Some(Kind::Stdout(data)) => {
                        stdout.push(&data);
                        if command.keep == Keep::Head && stdout.full() {
                            break End::Cut;
                        }
                    }
                    Some(Kind::Stderr(data)) => stderr.push(&data),
                    Some(Kind::Started(started)) => progress.report(format!("started, pid {} in the guest", started.pid)),
                    Some(Kind::Exited(exited)) => break if cancelled { End::Cancelled } else { End::Exited(exited) },
                    Some(Kind::StartFailed(failed)) => break End::StartFailed(failed),
                    Some(_) | None => {}
                },
                Some(Err(status)) => return Err(CallError::lost(status).into()),
                None => return Err(CallError::Protocol(crate::untrusted::protocol::ProtocolError::Unexpected("ended the exec without reporting how the process ended")).into()),
            },
            _ = ticks.tick() => progress.report(format!(
                "running for {} s, {} bytes of output so far",
                progress.seconds(),
                stdout.total() + stderr.total()
            )),
            () = cancel.cancelled(), if !cancelled => {
                cancelled = true;
                let _ = tx.try_send(signal("INT"));
                give_up = Instant::now() + CANCEL_GRACE;
            }
            () = tokio::time::sleep_until(give_up) => {
                if cancelled {
                    // Still there after SIGINT: as a third Ctrl-C, SIGKILL,
                    // and the dropped stream makes the agent reap the group.
                    let _ = tx.try_send(signal("KILL"));
                    break End::Cancelled;
                }
                return Err(RunError::NoAnswer(command.timeout));
            }
        }
    };
    Ok(Ran { end, stdout: stdout.finish(), stderr: stderr.finish(), took: began.elapsed() })
}

fn request(kind: exec_request::Kind) -> ExecRequest {
    ExecRequest { kind: Some(kind) }
}

fn signal(name: &str) -> ExecRequest {
    request(exec_request::Kind::Signal(SignalRequest { name: name.to_owned() }))
}
