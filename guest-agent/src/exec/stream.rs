//! One exec driven on its stream, from its `Start` request to its `Exited`
//! response (a `Start` that asks for a session is handed to `session_store`).
//!
//! The stream's task owns the child and decides when it ends:
//! - the main process exits: output is drained (up to [`DRAIN_GRACE`] for EOF,
//!   then cut, keeping what is already buffered) and `Exited` is sent last;
//! - the timeout expires: the group gets SIGTERM, then SIGKILL after
//!   [`TIMEOUT_KILL_GRACE`], and `Exited` says `timed_out`;
//! - the client cancels or disconnects: the group gets SIGKILL at once and the
//!   main process is reaped; nothing is sent.
//!
//! When the main process exits normally, background jobs it left in its group
//! keep running (as with `ssh host 'job &'`); after a timeout or a cancellation
//! the whole group is killed.
//!
//! [`DRAIN_GRACE`]: super::finish::DRAIN_GRACE
//! [`TIMEOUT_KILL_GRACE`]: super::timeout::TIMEOUT_KILL_GRACE

use std::sync::Arc;
use std::time::Duration;

use hutch_proto::v1::exec_request::Kind as RequestKind;
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecRequest, ExecResponse, Start, Started, StdinMode, TerminalSize};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::finish::{AbortOnDrop, drain, exited_message, send_failure};
use super::input::{self, InputEnd, Requests, StdinTarget};
use super::output::{Channel, Responses, pump};
use super::registry::Groups;
use super::session_store::Sessions;
use super::spawn::{ChildIo, Spawned, Spec, StartFailure, TtySpec, spawn};
use super::timeout::Timeout;

/// Default TERM in PTY mode when the client sends none.
const DEFAULT_TERM: &str = "xterm-256color";

/// Runs one exec to completion. Every outcome, failures included, is reported
/// on `responses`; this function never leaves a child unreaped. A `Start`
/// with `session` set goes to `sessions` instead, which keeps the process
/// beyond this stream.
///
/// `inbound` is the client's request stream: a gRPC `Streaming` for hutch.v1,
/// or Tart's requests translated into hutch.v1 ones (see `crate::tart`).
pub async fn run(mut inbound: impl Requests, responses: Responses, groups: Groups, sessions: Sessions) {
    let Some((mut start, early_size)) = read_start(&mut inbound, &responses).await else {
        return;
    };
    let session = start.session.take();
    let spec = match validate(start, early_size) {
        Ok(spec) => spec,
        Err(failure) => return send_failure(&responses, failure).await,
    };
    if let Some(options) = session {
        return sessions.start(spec.spec, spec.timeout, options, inbound, responses).await;
    }
    let started_at = Instant::now();
    let Spawned { mut child, pid, io } = match spawn(&spec.spec) {
        Ok(spawned) => spawned,
        Err(failure) => return send_failure(&responses, failure).await,
    };
    let _registration = groups.register(pid);
    tracing::debug!(pid, argv = ?spec.spec.argv, "started");
    if responses.send(Ok(response(Kind::Started(Started { pid: pid as u32, session: String::new() })))).await.is_err() {
        return kill_and_reap(&mut child, pid).await;
    }

    let (cut_tx, cut_rx) = watch::channel(false);
    let mut pumps = JoinSet::new();
    let (stdin, master) = match io {
        ChildIo::Pipes { stdin, stdout, stderr } => {
            pumps.spawn(pump(Arc::new(stdout), Channel::Stdout, responses.clone(), cut_rx.clone()));
            pumps.spawn(pump(Arc::new(stderr), Channel::Stderr, responses.clone(), cut_rx));
            (stdin.map(StdinTarget::Pipe), None)
        }
        ChildIo::Pty { master } => {
            pumps.spawn(pump(master.clone(), Channel::Stdout, responses.clone(), cut_rx));
            (Some(StdinTarget::Pty(master.clone())), Some(master))
        }
    };
    let mut input = AbortOnDrop(tokio::spawn(input::serve(inbound, pid, stdin, master)));
    let mut input_open = true;

    let mut timeout = Timeout::new(started_at, spec.timeout);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = timeout.step(pid) => {}
            end = &mut input.0, if input_open => {
                input_open = false;
                if let Ok(InputEnd::Broken(status)) = end {
                    kill_and_reap(&mut child, pid).await;
                    let _ = responses.send(Err(status)).await;
                    return;
                }
            }
            _ = responses.closed() => return kill_and_reap(&mut child, pid).await,
        }
    };
    let duration = started_at.elapsed();
    let timed_out = timeout.timed_out();
    if timed_out {
        signal_group(pid, Signal::SIGKILL);
    }
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            let _ = responses.send(Err(tonic::Status::internal(format!("waiting for pid {pid} failed: {e}")))).await;
            return;
        }
    };

    let drained = drain(&mut pumps, &cut_tx).await;
    if drained.client_gone {
        signal_group(pid, Signal::SIGKILL);
        return;
    }
    let mut exited = exited_message(status, timed_out, duration, drained.cut);
    exited.git_stamp = crate::git::registry::stamp();
    tracing::debug!(pid, ?exited, "exited");
    let _ = responses.send(Ok(response(Kind::Exited(exited)))).await;
}

/// A validated start request.
struct Validated {
    spec: Spec,
    timeout: Option<Duration>,
}

/// Reads up to the `Start` message, keeping any resize that comes before it.
/// Returns `None` when the stream ended or was invalid (already reported).
async fn read_start(inbound: &mut impl Requests, responses: &Responses) -> Option<(Start, Option<TerminalSize>)> {
    use futures_util::StreamExt;
    let mut early_size = None;
    loop {
        match inbound.next().await {
            Some(Ok(ExecRequest { kind: Some(RequestKind::Start(start)) })) => return Some((start, early_size)),
            Some(Ok(ExecRequest { kind: Some(RequestKind::Resize(size)) })) => early_size = Some(size),
            Some(Ok(_)) => {
                let failure = StartFailure::Invalid("the first message of an exec must be `start`".into());
                send_failure(responses, failure).await;
                return None;
            }
            Some(Err(status)) => {
                let _ = responses.send(Err(crate::untrusted::request_error(&status))).await;
                return None;
            }
            None => return None,
        }
    }
}

fn validate(start: Start, early_size: Option<TerminalSize>) -> Result<Validated, StartFailure> {
    if start.argv.is_empty() || start.argv[0].is_empty() {
        return Err(StartFailure::Invalid("no command given (argv is empty)".into()));
    }
    let has_nul = |s: &String| s.contains('\0');
    if start.argv.iter().any(has_nul) || start.cwd.contains('\0') {
        return Err(StartFailure::Invalid("an argument contains a NUL byte".into()));
    }
    if start.env.iter().any(|(k, v)| k.is_empty() || k.contains('=') || has_nul(k) || has_nul(v)) {
        return Err(StartFailure::Invalid("an environment variable has an empty name, '=' in its name, or a NUL byte".into()));
    }
    let stdin = StdinMode::try_from(start.stdin).unwrap_or(StdinMode::StdinPipe);
    let tty = start.tty.map(|tty| {
        let size = tty.size.filter(|s| s.rows > 0 && s.cols > 0).or(early_size).unwrap_or_default();
        TtySpec {
            term: if tty.term.is_empty() { DEFAULT_TERM.to_owned() } else { tty.term },
            rows: input::clamp(size.rows),
            cols: input::clamp(size.cols),
        }
    });
    Ok(Validated {
        spec: Spec { argv: start.argv, env: start.env, cwd: (!start.cwd.is_empty()).then(|| start.cwd.into()), stdin, tty },
        timeout: (start.timeout_ms > 0).then(|| Duration::from_millis(start.timeout_ms)),
    })
}

/// The client is gone (or its requests are broken): kill the whole group and
/// reap the main process.
async fn kill_and_reap(child: &mut Child, pid: i32) {
    tracing::debug!(pid, "killing the process group");
    signal_group(pid, Signal::SIGKILL);
    let _ = child.wait().await;
}

fn signal_group(pgid: i32, signal: Signal) {
    if let Err(e) = killpg(Pid::from_raw(pgid), signal) {
        tracing::debug!(pgid, "killpg {signal} failed: {e}");
    }
}

fn response(kind: Kind) -> ExecResponse {
    ExecResponse { kind: Some(kind) }
}
