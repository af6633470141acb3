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
#[derive(Clone, Copy, Debug)]
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
    loop {
        if *cut.borrow() {
            return drain_after_cut(&source, channel, &responses).await;
        }
        let mut buf = vec![0u8; OUTPUT_CHUNK];
        let outcome = tokio::select! {
            biased;
            outcome = source.read(&mut buf) => outcome,
            _ = cut.changed() => continue,
        };
        match outcome {
            Ok(ReadOutcome::Data(n)) => {
                let (filled, eof) = fill(&source, &mut buf, n);
                buf.truncate(filled);
                if responses.send(Ok(chunk(channel, buf))).await.is_err() {
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

/// Tops up a chunk that holds `filled` bytes with whatever else is already
/// waiting, without waiting for more: writers that emit small pieces (4-8 KiB
/// is common) then travel in a few full messages instead of many small ones,
/// and nothing is held back. Returns the new length and whether EOF was seen.
fn fill(source: &AsyncPipe, buf: &mut [u8], mut filled: usize) -> (usize, bool) {
    while filled < buf.len() {
        match source.try_read(&mut buf[filled..]) {
            Ok(ReadOutcome::Data(n)) => filled += n,
            Ok(ReadOutcome::Eof) => return (filled, true),
            Ok(ReadOutcome::Empty) | Err(_) => break,
        }
    }
    (filled, false)
}

async fn drain_after_cut(source: &AsyncPipe, channel: Channel, responses: &Responses) -> PumpEnd {
    for _ in 0..MAX_CHUNKS_AFTER_CUT {
        let mut buf = vec![0u8; OUTPUT_CHUNK];
        match source.try_read(&mut buf) {
            Ok(ReadOutcome::Data(n)) => {
                buf.truncate(n);
                if responses.send(Ok(chunk(channel, buf))).await.is_err() {
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

fn chunk(channel: Channel, data: Vec<u8>) -> ExecResponse {
    let data = Bytes::from(data);
    let kind = match channel {
        Channel::Stdout => Kind::Stdout(data),
        Channel::Stderr => Kind::Stderr(data),
    };
    ExecResponse { kind: Some(kind) }
}
