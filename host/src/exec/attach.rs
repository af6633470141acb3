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
use hutch_proto::v1::{AttachMode, AttachRequest, AttachStart, DetachReason, ExecRequest, TerminalSize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::terminal::{self, RawMode};
use super::{Drive, ExecError, Finished, Options, Outcome, REQUEST_QUEUE, Role, SessionSpec, first_answer, keys, start_request, stdin};
use crate::sessions::{self, SessionError};
use crate::transport::{CallError, Client};
use crate::untrusted::ProtocolError;
use crate::untrusted::protocol::known;

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
/// `Outcome::Detached` (its name inside) or why it did not start. The whole
/// call is short (`started`, then `detached`), so it has the call deadline.
pub async fn start_detached(client: &mut Client, options: &Options, session: &SessionSpec) -> Result<Finished, ExecError> {
    // Pipe-mode sessions read /dev/null, as `docker run -d` without `-i`;
    // on a PTY the terminal is their input, for whoever attaches.
    let start = start_request(options, stdin::Source::Null, Some(session));
    let requests = tokio_stream::once(ExecRequest { kind: Some(Request::Start(start)) });
    let deadline = client.deadline();
    let (mut responses, first) = first_answer(deadline.clone(), "Exec", client.exec(requests), CallError::from_status).await?;
    let rest = async move {
        let mut next = Some(first);
        loop {
            let message = match next.take() {
                Some(message) => message,
                None => match responses.next().await {
                    Some(Ok(message)) => message,
                    Some(Err(status)) => return Err(CallError::lost(status).into()),
                    None => return Err(ProtocolError::Unexpected("ended the exec without saying whether the session started").into()),
                },
            };
            let outcome = match message.kind {
                Some(Kind::Started(started)) if started.session.is_empty() => {
                    // An agent from before sessions ran it as a plain exec;
                    // leaving now makes it kill the process again.
                    return Err(SessionError::Unsupported.into());
                }
                Some(Kind::Started(_)) => continue,
                Some(Kind::Detached(detached)) if detached.reason == DetachReason::DetachAtStart as i32 => {
                    sessions::check_tag(&detached.session)?;
                    Outcome::Detached(detached)
                }
                Some(Kind::Detached(_)) => {
                    return Err(ProtocolError::Unexpected("answered `--detach` with another reason to detach").into());
                }
                Some(Kind::StartFailed(failed)) => Outcome::StartFailed(failed),
                Some(Kind::Exited(exited)) => {
                    crate::exit::of_exited(&exited)?;
                    Outcome::Exited(exited)
                }
                _ => return Err(ProtocolError::Unexpected("sent output or session news before `--detach` returned").into()),
            };
            return Ok(Finished { outcome, captured: None });
        }
    };
    deadline.within("Exec", rest).await.map_err(CallError::from)?
}

/// Connects to a session and stays until it ends or hutch detaches. The
/// agent has the call deadline to answer `attached`; after that the
/// session's own time is never cut (`logs` without `-f`, which must end by
/// itself, only may not go silent longer than the deadline).
pub async fn attach(client: &mut Client, options: &AttachOptions) -> Result<Finished, ExecError> {
    let size = terminal::size().map(|(rows, cols)| TerminalSize { rows: rows.into(), cols: cols.into() });
    let start =
        AttachStart { session: options.session.clone(), mode: options.mode as i32, force: options.force, size, follow: options.follow };
    let first = AttachRequest { kind: Some(AttachKind::Start(start)) };
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let requests = tokio_stream::once(first).chain(ReceiverStream::new(rx).map(to_attach_request));
    let status_error = |status| sessions::from_status(status, &options.session);
    let deadline = client.deadline();
    let (responses, first) = first_answer(deadline.clone(), "Attach", client.attach(requests), status_error).await?;
    let Some(Kind::Attached(attached)) = first.kind else {
        return Err(ProtocolError::Unexpected("did not answer the attach with `attached`").into());
    };
    let mode = match known::<AttachMode>("an attach mode", attached.mode)? {
        AttachMode::Unspecified => return Err(ProtocolError::UnknownValue { what: "an attach mode", value: 0 }.into()),
        mode => mode,
    };
    let logs = mode == AttachMode::AttachLogs;
    if logs != (options.mode == AttachMode::AttachLogs) || (options.mode == AttachMode::AttachViewer && mode == AttachMode::AttachWriter) {
        return Err(ProtocolError::Unexpected("answered the attach with a seat that was not asked for").into());
    }
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
        idle: (logs && !options.follow).then_some(deadline),
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
