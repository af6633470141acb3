//! One accepted connection, as h2 sees it: its client bytes read through
//! [`Frames`], a deadline on the HTTP/2 handshake, and the listener slot it
//! holds until it is dropped.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use super::frames::Frames;
use crate::limits;

/// Client bytes read per system call on the copying path.
const READ_CHUNK: usize = 64 * 1024;

/// A connection the agent serves.
pub struct Inbound<S> {
    io: S,
    frames: Frames,
    scratch: Vec<u8>,
    /// Until the handshake is done: when the connection is given up.
    handshake: Option<Pin<Box<Sleep>>>,
    /// The listener's slot, given back when the connection ends.
    _slot: OwnedSemaphorePermit,
}

impl<S> Inbound<S> {
    /// Wraps `io`, accepted with `slot`.
    pub fn new(io: S, slot: OwnedSemaphorePermit) -> Self {
        Inbound {
            io,
            frames: Frames::default(),
            scratch: Vec::new(),
            handshake: Some(Box::pin(tokio::time::sleep(limits::HANDSHAKE_TIMEOUT))),
            _slot: slot,
        }
    }
}

impl<S> Drop for Inbound<S> {
    fn drop(&mut self) {
        // A connection that opened many streams (or sent large messages)
        // leaves free heap behind: give it back if that is worth a trim.
        crate::malloc::trim_if_worth();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inbound<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.handshake.as_mut() {
            if this.frames.handshake_done() {
                this.handshake = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 handshake in time")));
            }
        }
        loop {
            let ready = this.frames.output();
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                this.frames.consume(n);
                return Poll::Ready(Ok(()));
            }
            // The rest of a pass-through payload (a DATA frame's body) is
            // read straight into h2's buffer, never past the frame's end:
            // the scanner sees no byte of it, and needs none.
            let direct = this.frames.direct().min(buf.remaining());
            if direct > 0 {
                let n = ready!(read_at_most(Pin::new(&mut this.io), cx, buf, direct))?;
                this.frames.passed_direct(n);
                return Poll::Ready(Ok(()));
            }
            if this.scratch.is_empty() {
                this.scratch = vec![0; READ_CHUNK];
            }
            let want = this.frames.next_read(READ_CHUNK);
            let mut scratch = ReadBuf::new(&mut this.scratch[..want]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut scratch))?;
            let n = scratch.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            this.frames.feed(&this.scratch[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if this.frames.handshake_done() {
                this.handshake = None;
            }
        }
    }
}

/// Reads at most `limit` bytes into `buf`'s unfilled part, without zeroing
/// it first (h2 hands over spare capacity it has not initialized, and
/// zeroing 1 MiB per DATA frame before each read is what this avoids);
/// how many bytes were read.
fn read_at_most<S: AsyncRead>(io: Pin<&mut S>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>, limit: usize) -> Poll<io::Result<usize>> {
    let mut part = buf.take(limit);
    let start = part.filled().as_ptr();
    ready!(io.poll_read(cx, &mut part))?;
    let n = part.filled().len();
    // A reader may not swap in a buffer of its own; if it did, its bytes
    // are not in `buf` and must not be counted as such.
    if part.filled().as_ptr() != start {
        return Poll::Ready(Err(io::Error::other("the connection's reader replaced the buffer it was given")));
    }
    // SAFETY: `part` views `buf`'s unfilled memory from its first byte
    // (`ReadBuf::take`), and the pointer check above shows the read filled
    // that memory, not another buffer. `part.filled()` is the prefix the
    // read initialized and wrote, `n <= limit <= buf.remaining()` bytes, so
    // the first `n` unfilled bytes of `buf` are initialized. What the bytes
    // are (hostile or not) does not matter here: only how many there are.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Poll::Ready(Ok(n))
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inbound<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<S> tonic::transport::server::Connected for Inbound<S> {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}
