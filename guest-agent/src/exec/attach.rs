//! One client attached to a session: the stream that started it (`--keep`),
//! `hutch attach`, or `hutch logs`.
//!
//! Output: the client reads the session's buffer from its own cursor, so
//! nothing is queued per client. A writer's cursor is recorded as it goes
//! (after each chunk is handed to the stream), so the next writer starts
//! where it stopped; a viewer's is its own.
//!
//! Input: a writer's `stdin`, `close_stdin`, `resize` and `signal` act on the
//! session as on a plain exec; whatever a viewer sends is ignored, except
//! `detach`. The client leaves when it sends `detach` (answered with
//! `detached`), when its call is cancelled or its connection breaks (no
//! answer possible), when another client takes its seat (`detached` with
//! DETACH_TAKEN_OVER), and after `exited` once the session has ended.

use std::sync::Arc;

use futures_util::StreamExt;
use hutch_proto::v1::attach_request::Kind as AttachKind;
use hutch_proto::v1::exec_request::Kind as Request;
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{AttachRequest, AttachStart, DetachReason, Detached, ExecRequest, ExecResponse, OutputDropped};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::finish::AbortOnDrop;
use super::input::{Requests, parse_signal};
use super::kept::{Client, Kept, Step};
use super::output::{Channel, OUTPUT_CHUNK, RESPONSE_QUEUE, Responses};
use super::ring::Cursor;

/// Where a client stops reading when the session has not ended.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// Live output too, until the session ends.
    End,
    /// Up to this offset (`hutch logs` without `-f`), then `detached`.
    Offset(u64),
}

/// Why the input side says the client is leaving.
#[derive(Debug)]
enum Leave {
    /// It sent `detach`.
    Detach,
    /// A request could not be decoded (or the connection broke): the stream
    /// ends with this status; the session runs on.
    Broken(Status),
}

/// A client about to be served: what
/// [`Sessions::attach`](super::session_store::Sessions::attach) set up.
pub struct Attaching {
    pub(super) kept: Arc<Kept>,
    pub(super) client: Client,
    pub(super) cursor: Cursor,
    pub(super) until: Until,
    pub(super) first: ExecResponse,
}

impl Attaching {
    /// Serves the client on `responses`, applying `inbound`.
    pub async fn serve(self, inbound: impl Requests, responses: Responses) {
        serve(self.kept, self.client, self.cursor, self.until, self.first, inbound, responses).await;
    }
}

/// An Attach call: reads its `start`, joins the session with `join` (or
/// fails the call, e.g. NOT_FOUND), and returns the response stream while a
/// task serves it. `join` is the sessions' `attach`, passed in so this file
/// stays below the sessions that use it.
pub async fn call<E>(
    join: impl FnOnce(&AttachStart) -> Result<Attaching, E>,
    mut inbound: Streaming<AttachRequest>,
) -> Result<impl Stream<Item = Result<ExecResponse, Status>> + Send + 'static, Status>
where
    Status: From<E>,
{
    let start = match inbound.message().await.map_err(|status| crate::untrusted::request_error(&status))? {
        Some(AttachRequest { kind: Some(AttachKind::Start(start)) }) => start,
        Some(_) => return Err(Status::invalid_argument("the first message of an Attach must be `start`")),
        None => return Err(Status::invalid_argument("the Attach stream ended before its `start`")),
    };
    let attaching = join(&start)?;
    let requests = inbound.map(|request| request.map(to_exec_request));
    let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
    tokio::spawn(attaching.serve(requests, tx));
    Ok(ReceiverStream::new(rx))
}

/// An Attach request after `start`, as the Exec request it stands for.
fn to_exec_request(request: AttachRequest) -> ExecRequest {
    let kind = request.kind.and_then(|kind| match kind {
        AttachKind::Start(_) => None,
        AttachKind::Stdin(data) => Some(Request::Stdin(data)),
        AttachKind::CloseStdin(close) => Some(Request::CloseStdin(close)),
        AttachKind::Resize(size) => Some(Request::Resize(size)),
        AttachKind::Signal(signal) => Some(Request::Signal(signal)),
        AttachKind::Detach(detach) => Some(Request::Detach(detach)),
    });
    ExecRequest { kind }
}

/// Serves `client` of `kept` from `cursor`: `first` (`started` or
/// `attached`), then output until it leaves or the session's end is sent.
pub async fn serve(
    kept: Arc<Kept>,
    client: Client,
    cursor: Cursor,
    until: Until,
    first: ExecResponse,
    inbound: impl Requests,
    responses: Responses,
) {
    let (leave_tx, leave_rx) = oneshot::channel();
    let input = AbortOnDrop(tokio::spawn(read_input(kept.clone(), client.clone_ref(), inbound, leave_tx)));
    let last = match responses.send(Ok(first)).await {
        Ok(()) => stream_output(&kept, &client, cursor, until, leave_rx, &responses).await,
        Err(_) => None,
    };
    drop(input);
    // The seat is free before the client hears the last word, so a client
    // that attaches right after its `detached` finds it free.
    kept.leave(&client);
    if let Some(last) = last {
        let _ = responses.send(last).await;
    }
}

/// Sends output until the client leaves or everything is sent; returns the
/// last word to send (`exited`, `detached`, or the status of a broken
/// request), if any.
async fn stream_output(
    kept: &Kept,
    client: &Client,
    mut cursor: Cursor,
    until: Until,
    mut leave: oneshot::Receiver<Leave>,
    responses: &Responses,
) -> Option<Result<ExecResponse, Status>> {
    let mut news = kept.news();
    let mut listening = true;
    let kicked = client.kicked.clone().unwrap_or_else(|| Arc::new(Notify::new()));
    loop {
        news.borrow_and_update();
        let max = match until {
            Until::End => OUTPUT_CHUNK,
            Until::Offset(stop) => usize::try_from(stop.saturating_sub(cursor.offset)).unwrap_or(OUTPUT_CHUNK).min(OUTPUT_CHUNK),
        };
        let (message, next) = match kept.next(cursor, max) {
            Step::Data(channel, data, next) => (chunk(channel, data), Some(next)),
            Step::Dropped(lost, next) => (Kind::Dropped(OutputDropped { stdout_bytes: lost[0], stderr_bytes: lost[1] }), Some(next)),
            Step::Ended(exited) => {
                kept.mark_reported();
                return Some(Ok(response(Kind::Exited(exited))));
            }
            Step::Idle => {
                if let Until::Offset(stop) = until
                    && cursor.offset >= stop
                {
                    return Some(Ok(detached(kept, DetachReason::DetachCaughtUp)));
                }
                tokio::select! {
                    left = &mut leave, if listening => match left {
                        Ok(leave) => return goodbye(kept, leave),
                        Err(_) => listening = false,
                    },
                    () = kicked.notified() => return Some(Ok(detached(kept, DetachReason::DetachTakenOver))),
                    _ = news.changed() => {}
                    () = responses.closed() => return None,
                }
                continue;
            }
        };
        tokio::select! {
            biased;
            left = &mut leave, if listening => match left {
                Ok(leave) => return goodbye(kept, leave),
                Err(_) => listening = false,
            },
            () = kicked.notified() => return Some(Ok(detached(kept, DetachReason::DetachTakenOver))),
            sent = responses.send(Ok(response(message))) => {
                if sent.is_err() {
                    return None;
                }
                if let Some(next) = next {
                    cursor = next;
                    kept.advance(client, cursor);
                }
            }
        }
    }
}

/// The answer to a client that leaves: `detached` if it asked, the reason
/// if its requests broke.
fn goodbye(kept: &Kept, leave: Leave) -> Option<Result<ExecResponse, Status>> {
    Some(match leave {
        Leave::Detach => Ok(detached(kept, DetachReason::DetachRequested)),
        Leave::Broken(status) => Err(status),
    })
}

/// Applies the client's requests (a writer's) until it leaves or stops sending.
async fn read_input(kept: Arc<Kept>, client: Client, mut inbound: impl Requests, leave: oneshot::Sender<Leave>) {
    loop {
        let request = match inbound.next().await {
            // Half-closed, or the call was cancelled (tonic ends the stream
            // then): nothing more will come; a client still there listens on.
            None => return,
            Some(Err(status)) => {
                tracing::debug!(session = %crate::untrusted::shown_str(&kept.name), code = ?status.code(), "attached client's requests broke off");
                let _ = leave.send(Leave::Broken(crate::untrusted::request_error(&status)));
                return;
            }
            Some(Ok(request)) => request,
        };
        let Some(kind) = request.kind else { continue };
        if let Request::Detach(_) = kind {
            let _ = leave.send(Leave::Detach);
            return;
        }
        if !kept.is_writer(&client) {
            continue; // viewers, and a writer whose seat was taken, only watch
        }
        match kind {
            Request::Stdin(data) if !data.is_empty() => kept.write_stdin(data).await,
            Request::CloseStdin(_) => kept.close_stdin().await,
            Request::Resize(size) => kept.resize(size),
            Request::Signal(signal) => match parse_signal(&signal.name) {
                Some(sig) => {
                    if let Err(e) = kept.signal(sig) {
                        tracing::debug!(pid = kept.pid, "signal {sig} not delivered: {e}");
                    }
                }
                None => tracing::warn!(pid = kept.pid, name = %crate::untrusted::shown_str(&signal.name), "unknown signal name ignored"),
            },
            _ => {}
        }
    }
}

impl Client {
    /// A second handle on the same client, for the input side.
    fn clone_ref(&self) -> Client {
        Client { id: self.id, role: self.role, kicked: None, took_over: self.took_over }
    }
}

fn detached(kept: &Kept, reason: DetachReason) -> ExecResponse {
    response(Kind::Detached(Detached { reason: reason as i32, session: kept.name.clone() }))
}

fn chunk(channel: Channel, data: bytes::Bytes) -> Kind {
    match channel {
        Channel::Stdout => Kind::Stdout(data),
        Channel::Stderr => Kind::Stderr(data),
    }
}

fn response(kind: Kind) -> ExecResponse {
    ExecResponse { kind: Some(kind) }
}
