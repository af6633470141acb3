//! A session's clients on the host: starting one detached (`exec
//! --detach`), and connecting to one (`hutch attach`, `hutch logs`).
//!
//! Attaching waits for the agent's `attached` before it touches the local
//! terminal: only then is it known whether the session runs on a PTY (raw
//! mode, the detach keys) and whether hutch got the writer's seat (stdin,
//! resizes) or watches.

use std::io::IsTerminal;

use futures_util::StreamExt;
use hutch_proto::v1::attach_request::Kind as AttachKind;
use hutch_proto::v1::exec_request::Kind as Request;
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{AttachMode, AttachRequest, AttachStart, ExecRequest, ExecResponse, TerminalSize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::terminal::{self, RawMode};
use super::{Drive, ExecError, Finished, Options, Outcome, REQUEST_QUEUE, Role, SessionSpec, keys, start_request, stdin};
use crate::sessions::{self, SessionError};
use crate::transport::{CallError, Client};

/// What `hutch attach` or `hutch logs` asks for.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The session's name.
    pub session: String,
    /// Writer, viewer, or the whole buffer (logs).
    pub mode: AttachMode,
    /// Take the writer's seat from whoever holds it.
    pub force: bool,
    /// Logs: stream live output after the buffer.
    pub follow: bool,
}

/// Starts `options` as a detached session: returns once it runs, with
/// `Outcome::Detached` (its name inside) or why it did not start.
pub async fn start_detached(client: &mut Client, options: &Options, session: &SessionSpec) -> Result<Finished, ExecError> {
    // Pipe-mode sessions read /dev/null, as `docker run -d` without `-i`;
    // on a PTY the terminal is their input, for whoever attaches.
    let start = start_request(options, stdin::Source::Null, Some(session));
    let requests = tokio_stream::once(ExecRequest { kind: Some(Request::Start(start)) });
    let mut responses = client.exec(requests).await.map_err(CallError::from_status)?.into_inner();
    loop {
        let outcome = match responses.next().await {
            Some(Ok(ExecResponse { kind: Some(kind) })) => match kind {
                Kind::Started(started) if started.session.is_empty() => {
                    // An agent from before sessions ran it as a plain exec;
                    // leaving now makes it kill the process again.
                    return Err(SessionError::Unsupported.into());
                }
                Kind::Detached(detached) => Outcome::Detached(detached),
                Kind::StartFailed(failed) => Outcome::StartFailed(failed),
                Kind::Exited(exited) => Outcome::Exited(exited),
                _ => continue,
            },
            Some(Ok(ExecResponse { kind: None })) => continue,
            Some(Err(status)) => return Err(CallError::lost(status).into()),
            None => return Err(CallError::Protocol("the agent ended the exec without saying whether the session started".into()).into()),
        };
        return Ok(Finished { outcome, captured: None });
    }
}

/// Connects to a session and stays until it ends or hutch detaches.
pub async fn attach(client: &mut Client, options: &AttachOptions) -> Result<Finished, ExecError> {
    let size = terminal::size().map(|(rows, cols)| TerminalSize { rows: rows.into(), cols: cols.into() });
    let start =
        AttachStart { session: options.session.clone(), mode: options.mode as i32, force: options.force, size, follow: options.follow };
    let first = AttachRequest { kind: Some(AttachKind::Start(start)) };
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let requests = tokio_stream::once(first).chain(ReceiverStream::new(rx).map(to_attach_request));
    let status_error = |status| sessions::from_status(status, &options.session);
    let mut responses = client.attach(requests).await.map_err(status_error)?.into_inner();
    let attached = match responses.next().await {
        Some(Ok(ExecResponse { kind: Some(Kind::Attached(attached)) })) => attached,
        Some(Err(status)) => return Err(status_error(status).into()),
        _ => return Err(CallError::Protocol("the agent did not answer the attach with `attached`".into()).into()),
    };
    let mode = AttachMode::try_from(attached.mode).unwrap_or(AttachMode::AttachViewer);
    let writer = mode == AttachMode::AttachWriter;
    if options.mode == AttachMode::AttachWriter && !writer {
        eprintln!(
            "hutch: another client is attached to session {name} as its writer: watching read-only (`hutch attach --force {name}` takes over)",
            name = sessions::printable(&attached.session)
        );
    }
    if attached.took_over {
        eprintln!("hutch: took session {} over from the client attached before", sessions::printable(&attached.session));
    }
    let logs = mode == AttachMode::AttachLogs;
    let raw = if attached.tty && !logs && std::io::stdin().is_terminal() { RawMode::enable() } else { None };
    if raw.is_some() {
        keys::forward(tx.clone(), writer);
    } else if writer && stdin::classify() == stdin::Source::Readable {
        stdin::forward(tx.clone());
    }
    let drive = Drive {
        role: Role::Session { viewer: !writer, kill_on_abandon: false },
        resizes: writer && attached.tty,
        capture: false,
        raw: raw.is_some(),
    };
    let finished = drive.run(responses, tx).await;
    drop(raw);
    finished
}

/// An Exec request of the local side (stdin, resize, signal, detach) as the
/// Attach request that carries it.
fn to_attach_request(request: ExecRequest) -> AttachRequest {
    let kind = request.kind.and_then(|kind| match kind {
        Request::Stdin(data) => Some(AttachKind::Stdin(data)),
        Request::CloseStdin(close) => Some(AttachKind::CloseStdin(close)),
        Request::Resize(size) => Some(AttachKind::Resize(size)),
        Request::Signal(signal) => Some(AttachKind::Signal(signal)),
        Request::Detach(detach) => Some(AttachKind::Detach(detach)),
        Request::Start(_) => None,
    });
    AttachRequest { kind }
}
