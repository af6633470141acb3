//! The client's side of an exec after `Start`: stdin, EOF, resizes, signals.
//!
//! Requests are read by one task and stdin bytes are written by another, fed
//! through a small bounded queue, so a child that is slow to read stdin holds
//! the client back (HTTP/2 flow control) without the agent buffering more than
//! `STDIN_QUEUE` chunks.

use std::sync::Arc;

use futures_util::StreamExt;
use hutch_proto::v1::ExecRequest;
use hutch_proto::v1::exec_request::Kind;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio_stream::Stream;

use super::fd::AsyncPipe;
use super::pty;

/// Stdin chunks that may wait in the agent per exec.
const STDIN_QUEUE: usize = 8;

/// A client's requests on one exec: what [`serve`] and the session read.
/// A gRPC `Streaming<ExecRequest>` is one; so is any adapter that turns
/// another protocol's requests (Tart's) into hutch.v1 ones.
pub trait Requests: Stream<Item = Result<ExecRequest, tonic::Status>> + Send + Unpin + 'static {}
impl<T: Stream<Item = Result<ExecRequest, tonic::Status>> + Send + Unpin + 'static> Requests for T {}

/// Where stdin bytes go.
pub enum StdinTarget {
    /// The write end of the child's stdin pipe; EOF closes it.
    Pipe(AsyncPipe),
    /// The terminal master; EOF is the terminal's VEOF character.
    Pty(Arc<AsyncPipe>),
}

/// How the request stream ended.
#[derive(Debug)]
pub enum InputEnd {
    /// The client half-closed: it will send nothing more, but still listens.
    HalfClosed,
    /// A request could not be decoded (or was over the size limit): the exec
    /// cannot go on, and the client is told why with this status.
    Broken(tonic::Status),
}

/// What a stdin writer is given: bytes, or the end of them.
pub(super) enum StdinMsg {
    /// Bytes to write.
    Data(bytes::Bytes),
    /// No more: close the pipe (EOF on a terminal).
    Close,
}

/// Reads requests until the client half-closes or goes away, applying each one.
///
/// `stdin` is `None` when the child's stdin is /dev/null; stdin bytes are then
/// dropped. `master` is the PTY in PTY mode, the target of resizes.
pub async fn serve(mut inbound: impl Requests, pgid: i32, stdin: Option<StdinTarget>, master: Option<Arc<AsyncPipe>>) -> InputEnd {
    let mut to_writer = stdin.map(|target| {
        let (tx, rx) = mpsc::channel(STDIN_QUEUE);
        tokio::spawn(write_stdin(target, rx));
        tx
    });
    loop {
        let request = match inbound.next().await {
            None => {
                if let Some(tx) = to_writer.take() {
                    let _ = tx.send(StdinMsg::Close).await;
                }
                return InputEnd::HalfClosed;
            }
            Some(Err(status)) => {
                // tonic reports a cancelled call as the end of the stream, so
                // this is a request it could not decode, or a broken
                // connection (then nobody reads the answer).
                tracing::debug!(pgid, code = ?status.code(), "exec request stream broke");
                return InputEnd::Broken(crate::untrusted::request_error(&status));
            }
            Some(Ok(request)) => request,
        };
        match request.kind {
            Some(Kind::Stdin(data)) => {
                if let Some(tx) = &to_writer
                    && !data.is_empty()
                    && tx.send(StdinMsg::Data(data)).await.is_err()
                {
                    // The writer stopped (the child closed its stdin): drop the rest.
                    to_writer = None;
                }
            }
            Some(Kind::CloseStdin(_)) => {
                if let Some(tx) = to_writer.take() {
                    let _ = tx.send(StdinMsg::Close).await;
                }
            }
            Some(Kind::Resize(size)) => {
                if let Some(master) = &master {
                    let (rows, cols) = (clamp(size.rows), clamp(size.cols));
                    if let Err(e) = pty::resize(master.as_fd(), rows, cols) {
                        tracing::warn!(pgid, "resize failed: {e}");
                    }
                }
            }
            Some(Kind::Signal(signal)) => match parse_signal(&signal.name) {
                Some(sig) => {
                    if let Err(e) = killpg(Pid::from_raw(pgid), sig) {
                        tracing::debug!(pgid, "signal {sig} not delivered: {e}");
                    }
                }
                None => tracing::warn!(pgid, name = %crate::untrusted::shown_str(&signal.name), "unknown signal name ignored"),
            },
            Some(Kind::Start(_)) => {
                tracing::warn!(pgid, "a second start on one exec stream is ignored")
            }
            // Only sessions can be left running; a plain exec ends with its stream.
            Some(Kind::Detach(_)) => {}
            None => {}
        }
    }
}

/// Writes what arrives on `rx` to `target` until `Close` or the channel's end.
pub(super) async fn write_stdin(target: StdinTarget, mut rx: mpsc::Receiver<StdinMsg>) {
    let pipe = match &target {
        StdinTarget::Pipe(pipe) => pipe,
        StdinTarget::Pty(master) => master.as_ref(),
    };
    let mut line_pending = false;
    while let Some(msg) = rx.recv().await {
        match msg {
            StdinMsg::Data(data) => {
                line_pending = data.last().is_some_and(|&b| b != b'\n');
                if pipe.write_all(&data).await.is_err() {
                    // EPIPE: the child closed stdin; later bytes have nowhere to go.
                    return;
                }
            }
            StdinMsg::Close => break,
        }
    }
    if let StdinTarget::Pty(master) = &target
        && let Ok(eof) = pty::eof_sequence(master.as_fd(), line_pending)
    {
        let _ = master.write_all(&eof).await;
    }
    // Pipe mode: dropping `target` closes the write end, so the child sees EOF.
}

/// Parses a signal name such as "TERM", "SIGTERM" or "term".
pub fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    format!("SIG{bare}").parse().ok()
}

/// Terminal dimensions are u16 in the kernel; larger values are clamped.
pub fn clamp(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_portable() {
        assert_eq!(parse_signal("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("SIGWINCH"), Some(Signal::SIGWINCH));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal(""), None);
    }
}
