//! A guest connection carried as chunks through a bounded queue each way,
//! seen as a byte stream: the pieces the vsock pipe's connections
//! ([`super::guest_io`]) and the link's ([`super::link::io`]) share.

use std::io;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::ReadBuf;
use tokio_util::sync::PollSender;

/// Moves as much of `pending` as fits into `buf`; whether there was any.
pub fn give(pending: &mut Bytes, buf: &mut ReadBuf<'_>) -> bool {
    if pending.is_empty() {
        return false;
    }
    let n = buf.remaining().min(pending.len());
    buf.put_slice(&pending.split_to(n));
    true
}

/// A stream's `poll_write`: sends the start of `buf`, at most `chunk`
/// bytes, as one message made by `message`, once the queue has room; how
/// many bytes went. Refused after the stream was `closed` (shut down).
pub fn send<T: Send>(
    queue: &mut PollSender<T>,
    cx: &mut Context<'_>,
    closed: bool,
    buf: &[u8],
    chunk: usize,
    message: impl FnOnce(Bytes) -> T,
) -> Poll<io::Result<usize>> {
    if closed {
        return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "write after shutdown")));
    }
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    ready!(queue.poll_reserve(cx)).map_err(|_| gone())?;
    let n = buf.len().min(chunk);
    queue.send_item(message(Bytes::copy_from_slice(&buf[..n]))).map_err(|_| gone())?;
    Poll::Ready(Ok(n))
}

/// Sends `message` (the end of the stream) once the queue has room.
pub fn finish<T: Send>(queue: &mut PollSender<T>, cx: &mut Context<'_>, message: impl FnOnce() -> T) -> Poll<io::Result<()>> {
    ready!(queue.poll_reserve(cx)).map_err(|_| gone())?;
    queue.send_item(message()).map_err(|_| gone())?;
    Poll::Ready(Ok(()))
}

/// The error of a write to a connection whose guest side is gone.
fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the guest connection is gone")
}
