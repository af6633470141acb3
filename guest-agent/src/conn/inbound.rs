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
            // The body of a large DATA frame goes straight into h2's buffer
            // when it cannot run past the frame's end.
            if this.frames.direct() >= buf.remaining() && buf.remaining() > 0 {
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                this.frames.passed_direct(buf.filled().len() - before);
                return Poll::Ready(Ok(()));
            }
            if this.scratch.is_empty() {
                this.scratch = vec![0; READ_CHUNK];
            }
            let mut scratch = ReadBuf::new(&mut this.scratch);
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
