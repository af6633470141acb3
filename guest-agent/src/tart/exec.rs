//! Tart's `Exec` on top of the agent's own exec session.
//!
//! Requests: `command` becomes `Start` (`interactive: false` → stdin from
//! /dev/null; `tty` → a PTY of `terminal_size`), a `standard_input` chunk
//! becomes `stdin` (an empty one, Tart's EOF, becomes `close_stdin`), and
//! `terminal_resize` becomes `resize`.
//!
//! Responses: stdout/stderr chunks pass through; `Exited` becomes
//! `exit.code`, with 128+N for a command killed by signal N, as a shell (and
//! tart-guest-agent) reports it. A command that is not found or not executable
//! answers a message on stderr and exit code 127 or 126, like a shell; other
//! start failures are gRPC errors.
//!
//! `detach`: the command becomes a session (its output kept in the session's
//! buffer for `hutch logs`, not discarded); the agent answers `started` with
//! the session's name as the exec id (what `Signal` takes), then `exit` code
//! 0, as tart-guest-agent does, and the command runs on.

use futures_util::StreamExt;
use hutch_proto::tart::exec_request::{Command, Type as TartRequest};
use hutch_proto::tart::exec_response::{Exit, Type as TartResponse};
use hutch_proto::tart::{ExecRequest, ExecResponse, IoChunk};
use hutch_proto::v1;
use hutch_proto::v1::exec_request::Kind as Request;
use hutch_proto::v1::exec_response::Kind as Response;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::exec::output::RESPONSE_QUEUE;
use crate::exec::registry::Groups;
use crate::exec::session_store::Sessions;
use crate::exec::stream;

/// Reads the `command`, starts the session, and returns Tart's response stream.
pub async fn start(
    mut inbound: Streaming<ExecRequest>,
    groups: Groups,
    sessions: Sessions,
) -> Result<impl Stream<Item = Result<ExecResponse, Status>> + Send + 'static, Status> {
    let command = match inbound.message().await.map_err(|status| crate::untrusted::request_error(&status))? {
        Some(ExecRequest { r#type: Some(TartRequest::Command(command)) }) => command,
        Some(_) => return Err(Status::invalid_argument("the first message of an Exec must be `command`")),
        None => return Err(Status::invalid_argument("the Exec stream ended before its `command`")),
    };
    let first = v1::ExecRequest { kind: Some(Request::Start(to_start(command)?)) };
    let requests = tokio_stream::once(Ok(first)).chain(inbound.map(|request| request.map(to_hutch)));

    let (hutch_tx, hutch_rx) = mpsc::channel(RESPONSE_QUEUE);
    let (tart_tx, tart_rx) = mpsc::channel(RESPONSE_QUEUE);
    tokio::spawn(stream::run(requests, hutch_tx, groups, sessions));
    tokio::spawn(forward(hutch_rx, tart_tx));
    Ok(ReceiverStream::new(tart_rx))
}

/// Tart's `Command` as a hutch.v1 `Start`, or why it cannot be run.
fn to_start(command: Command) -> Result<v1::Start, Status> {
    if !command.user.is_empty() {
        return Err(Status::unimplemented("hutch-agent runs commands as its own user; `user` is not supported"));
    }
    let mut argv = Vec::with_capacity(command.args.len() + 1);
    argv.push(command.name);
    argv.extend(command.args);
    let tty = command
        .tty
        .then(|| v1::Tty { term: String::new(), size: command.terminal_size.map(|s| v1::TerminalSize { rows: s.rows, cols: s.cols }) });
    let stdin = if command.interactive { v1::StdinMode::StdinPipe } else { v1::StdinMode::StdinNull };
    let session = command.detach.then(v1::SessionOptions::default).map(|options| v1::SessionOptions { detach: true, ..options });
    Ok(v1::Start { argv, env: command.env, cwd: command.workdir, tty, timeout_ms: 0, stdin: stdin as i32, tag: "tart".into(), session })
}

/// One Tart request after the first, as a hutch.v1 request.
fn to_hutch(request: ExecRequest) -> v1::ExecRequest {
    let kind = match request.r#type {
        Some(TartRequest::StandardInput(IoChunk { data })) if data.is_empty() => Some(Request::CloseStdin(v1::CloseStdin {})),
        Some(TartRequest::StandardInput(IoChunk { data })) => Some(Request::Stdin(data)),
        Some(TartRequest::TerminalResize(size)) => Some(Request::Resize(v1::TerminalSize { rows: size.rows, cols: size.cols })),
        // A second command is what hutch.v1 calls a second start: ignored.
        Some(TartRequest::Command(command)) => to_start(command).ok().map(Request::Start),
        None => None,
    };
    v1::ExecRequest { kind }
}

/// Copies the session's responses into Tart's stream until the command ends
/// or the client leaves (dropping `hutch` then tells the session to kill it).
async fn forward(mut hutch: mpsc::Receiver<Result<v1::ExecResponse, Status>>, tart: mpsc::Sender<Result<ExecResponse, Status>>) {
    loop {
        let next = tokio::select! {
            next = hutch.recv() => next,
            () = tart.closed() => return,
        };
        let Some(next) = next else { return };
        let (out, last) = match next {
            Ok(v1::ExecResponse { kind: Some(kind) }) => to_tart(kind),
            Ok(v1::ExecResponse { kind: None }) => continue,
            Err(status) => (vec![Err(status)], true),
        };
        for item in out {
            if tart.send(item).await.is_err() {
                return;
            }
        }
        if last {
            return;
        }
    }
}

/// Tart responses for one session response, and whether it was the last.
fn to_tart(kind: Response) -> (Vec<Result<ExecResponse, Status>>, bool) {
    let reply = |r#type| Ok(ExecResponse { r#type: Some(r#type) });
    match kind {
        // A detached command's session name is its exec id; an attached
        // command's `started` stays unsaid, as before.
        Response::Started(started) if !started.session.is_empty() => {
            (vec![reply(TartResponse::Started(tart_started(started.session)))], false)
        }
        Response::Started(_) => (Vec::new(), false),
        // The command runs on: the stream ends as tart-guest-agent ends it.
        Response::Detached(_) => (vec![reply(TartResponse::Exit(Exit { code: 0 }))], true),
        Response::Dropped(_) | Response::Attached(_) => (Vec::new(), false),
        Response::Stdout(data) => (vec![reply(TartResponse::StandardOutput(IoChunk { data }))], false),
        Response::Stderr(data) => (vec![reply(TartResponse::StandardError(IoChunk { data }))], false),
        Response::Exited(exited) => (vec![reply(TartResponse::Exit(Exit { code: exit_code(&exited) }))], true),
        Response::StartFailed(failed) => {
            let code = match v1::StartError::try_from(failed.error) {
                Ok(v1::StartError::NotFound) => 127,
                Ok(v1::StartError::NotExecutable) => 126,
                _ => return (vec![Err(Status::invalid_argument(failed.message))], true),
            };
            let message = IoChunk { data: format!("hutch-agent: {}\n", failed.message).into() };
            (vec![reply(TartResponse::StandardError(message)), reply(TartResponse::Exit(Exit { code }))], true)
        }
    }
}

fn tart_started(exec_id: String) -> hutch_proto::tart::exec_response::Started {
    hutch_proto::tart::exec_response::Started { exec_id }
}

/// The shell's view of an exit: the code, or 128+N for signal N.
fn exit_code(exited: &v1::Exited) -> i32 {
    match exited.status {
        Some(v1::exited::Status::Code(code)) => code,
        Some(v1::exited::Status::Signal(signal)) => 128 + i32::try_from(signal).unwrap_or(127),
        None => 255,
    }
}
