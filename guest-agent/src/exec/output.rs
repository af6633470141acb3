//! Output pumps: copy a child's stdout/stderr (or PTY master) into the
//! response stream.
//!
//! Backpressure: responses go through a bounded channel, and a pump awaits room
//! before it reads again, so a slow client slows the child down (its writes
//! block on a full pipe) instead of making the agent buffer without bound. At
//! most `RESPONSE_QUEUE` chunks of `OUTPUT_CHUNK` bytes per exec wait in the agent.
//!
//! Cutting: once the main process has exited, the session waits a short grace
//! for EOF. A background job that inherited stdout keeps the pipe open; when the
//! grace is over the session raises `cut`, and the pump takes what is already in
//! the pipe (everything the main process wrote), then stops.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use hutch_proto::v1::ExecResponse;
use hutch_proto::v1::exec_response::Kind;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::fd::{AsyncPipe, ReadOutcome};

/// Chunks that may wait in the agent per exec before pumps stop reading.
pub const RESPONSE_QUEUE: usize = 4;

/// Largest output chunk sent in one response. Bulk output (`cat big.log`,
/// `tar c .`) travels in few large messages: each message costs a wake-up,
/// a frame header and an allocation on both sides, whatever its size.
pub const OUTPUT_CHUNK: usize = 256 * 1024;

/// After a cut, read at most this many more chunks that are already buffered,
/// so a background writer cannot keep a pump alive.
const MAX_CHUNKS_AFTER_CUT: usize = 16;

/// The sending side of an Exec response stream.
pub type Responses = mpsc::Sender<Result<ExecResponse, Status>>;

/// Which stream a pump feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// stdout, or the terminal in PTY mode.
    Stdout,
    /// stderr (pipe mode only).
    Stderr,
}

/// How a pump ended.
#[derive(Debug)]
pub enum PumpEnd {
    /// The stream reached EOF: every byte was sent.
    Eof,
    /// The session cut the stream after its grace.
    Cut,
    /// The client is gone; nothing more can be sent.
    ClientGone,
    /// Reading failed.
    Failed(io::Error),
}

/// Copies `source` into `responses` until EOF, a cut, or the client leaving.
pub async fn pump(source: Arc<AsyncPipe>, channel: Channel, responses: Responses, mut cut: watch::Receiver<bool>) -> PumpEnd {
    // Allocated at the first byte: most streams of most commands stay empty.
    let mut buf = Vec::new();
    loop {
        if *cut.borrow() {
            return drain_after_cut(&source, channel, &responses, &mut buf).await;
        }
        let outcome = tokio::select! {
            biased;
            outcome = source.read(&mut buf, OUTPUT_CHUNK) => outcome,
            _ = cut.changed() => continue,
        };
        match outcome {
            Ok(ReadOutcome::Data) => {
                let eof = fill(&source, &mut buf);
                if responses.send(Ok(chunk(channel, take(&mut buf)))).await.is_err() {
                    return PumpEnd::ClientGone;
                }
                if eof {
                    return PumpEnd::Eof;
                }
            }
            Ok(ReadOutcome::Eof) => return PumpEnd::Eof,
            Ok(ReadOutcome::Empty) => continue,
            Err(e) => return PumpEnd::Failed(e),
        }
    }
}

/// Tops up `buf` with whatever else is already waiting, without waiting for
/// more: writers that emit small pieces (4-8 KiB is common) then travel in a
/// few full messages instead of many small ones, and nothing is held back.
/// Returns whether EOF was seen.
fn fill(source: &AsyncPipe, buf: &mut Vec<u8>) -> bool {
    while buf.len() < buf.capacity() {
        match source.try_read(buf, OUTPUT_CHUNK) {
            Ok(ReadOutcome::Data) => {}
            Ok(ReadOutcome::Eof) => return true,
            Ok(ReadOutcome::Empty) | Err(_) => break,
        }
    }
    false
}

/// Hands over what `buf` holds and leaves it empty. A large chunk takes the
/// buffer itself along (no copy; the next read allocates a new one, without
/// zeroing it); a small one, the usual line or two, is copied out so the
/// buffer is reused.
fn take(buf: &mut Vec<u8>) -> Bytes {
    if buf.len() >= OUTPUT_CHUNK / 4 {
        crate::malloc::note_bulk();
        Bytes::from(std::mem::take(buf))
    } else {
        let small = Bytes::copy_from_slice(buf);
        buf.clear();
        small
    }
}

async fn drain_after_cut(source: &AsyncPipe, channel: Channel, responses: &Responses, buf: &mut Vec<u8>) -> PumpEnd {
    for _ in 0..MAX_CHUNKS_AFTER_CUT {
        match source.try_read(buf, OUTPUT_CHUNK) {
            Ok(ReadOutcome::Data) => {
                if responses.send(Ok(chunk(channel, take(buf)))).await.is_err() {
                    return PumpEnd::ClientGone;
                }
            }
            Ok(ReadOutcome::Eof) => return PumpEnd::Eof,
            Ok(ReadOutcome::Empty) => break,
            Err(e) => return PumpEnd::Failed(e),
        }
    }
    PumpEnd::Cut
}

fn chunk(channel: Channel, data: Bytes) -> ExecResponse {
    let kind = match channel {
        Channel::Stdout => Kind::Stdout(data),
        Channel::Stderr => Kind::Stderr(data),
    };
    ExecResponse { kind: Some(kind) }
}
