//! One guest connection that came over the link, as the proxy sees it: a
//! byte stream (`AsyncRead`/`AsyncWrite`) fed by the link's stack through
//! two bounded queues. A full queue leaves the bytes in the stack's socket,
//! whose window then closes: a guest that sends faster than the proxy reads
//! (or reads slower than it writes) is held back by TCP itself.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::PollSender;

use crate::net::chunked;

/// What crosses a queue.
#[derive(Debug)]
pub enum Chunk {
    /// Bytes.
    Data(Bytes),
    /// The end of this direction (a FIN). A queue closed without it means
    /// the connection was reset.
    Fin,
}

/// Largest chunk the proxy's writes are cut into.
pub const CHUNK: usize = 256 * 1024;

/// The proxy's end of a link connection.
pub struct LinkIo {
    inbound: mpsc::Receiver<Chunk>,
    pending: Bytes,
    eof: bool,
    outbound: PollSender<Chunk>,
    closed: bool,
    /// Wakes the link's stack: after a read (room in the queue) and a write.
    wake: Arc<Notify>,
}

/// The stack's end of a link connection.
pub struct StackEnd {
    /// Toward the proxy.
    pub to_proxy: mpsc::Sender<Chunk>,
    /// From the proxy.
    pub from_proxy: mpsc::Receiver<Chunk>,
}

/// A connection's two ends, with queues of `depth` chunks each way.
pub fn pair(depth: usize, wake: Arc<Notify>) -> (LinkIo, StackEnd) {
    let (to_proxy, inbound) = mpsc::channel(depth);
    let (outbound, from_proxy) = mpsc::channel(depth);
    let io = LinkIo { inbound, pending: Bytes::new(), eof: false, outbound: PollSender::new(outbound), closed: false, wake };
    (io, StackEnd { to_proxy, from_proxy })
}

impl AsyncRead for LinkIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if chunked::give(&mut self.pending, buf) {
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.inbound.poll_recv(cx)) {
                Some(Chunk::Data(data)) => {
                    self.pending = data;
                    self.wake.notify_one();
                }
                Some(Chunk::Fin) => self.eof = true,
                None => {
                    self.eof = true;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "the guest reset the connection")));
                }
            }
        }
    }
}

impl AsyncWrite for LinkIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let closed = self.closed;
        let n = ready!(chunked::send(&mut self.outbound, cx, closed, buf, CHUNK, Chunk::Data))?;
        if n > 0 {
            self.wake.notify_one();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        ready!(chunked::finish(&mut self.outbound, cx, || Chunk::Fin))?;
        self.closed = true;
        self.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LinkIo {
    fn drop(&mut self) {
        // The stack sees the queue close; let it act now.
        self.wake.notify_one();
    }
}
