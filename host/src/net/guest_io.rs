//! One guest connection as a byte stream: the `EgressAccept` gRPC stream
//! seen through `AsyncRead`/`AsyncWrite`, so the HTTP and TLS code above it
//! need not know where the bytes come from.
//!
//! Reads take the agent's `data` chunks (no copy: they are `Bytes` slices of
//! the receive buffer) and end at its `close_write`; writes send `data`
//! chunks of at most 64 KiB through a bounded queue (a guest that stops
//! reading stops the writer, through HTTP/2 flow control), and shutdown sends
//! `close_write`. [`Counted`] counts what crosses any stream, for the audit log.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use hutch_proto::v1::forward_request::Kind as RequestKind;
use hutch_proto::v1::forward_response::Kind;
use hutch_proto::v1::{CloseWrite, ForwardRequest, ForwardResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::PollSender;
use tonic::Streaming;

/// Largest `data` chunk sent to the guest (256 KiB, the size of the agent's
/// exec output chunks): each message costs the guest agent a decode, a task
/// hand-off and a socket write, emulated instruction by instruction under
/// TCG, so a download in 256 KiB messages beat 64 KiB ones (see
/// docs/benchmarks.md). The agent accepts messages of up to 4 MiB.
pub const DOWN_CHUNK: usize = 256 * 1024;

/// Bytes that crossed a connection, each way.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Guest → host.
    pub up: Arc<AtomicU64>,
    /// Host → guest.
    pub down: Arc<AtomicU64>,
}

impl Counters {
    /// (up, down) so far.
    pub fn get(&self) -> (u64, u64) {
        (self.up.load(Ordering::Relaxed), self.down.load(Ordering::Relaxed))
    }
}

/// A guest connection carried by an EgressAccept stream.
pub struct GuestIo {
    inbound: Option<Streaming<ForwardResponse>>,
    pending: Bytes,
    eof: bool,
    outbound: PollSender<ForwardRequest>,
    closed: bool,
}

impl GuestIo {
    /// The connection whose guest bytes arrive on `inbound` and whose host
    /// bytes go out through `outbound`.
    pub fn new(inbound: Streaming<ForwardResponse>, outbound: tokio::sync::mpsc::Sender<ForwardRequest>) -> GuestIo {
        GuestIo { inbound: Some(inbound), pending: Bytes::new(), eof: false, outbound: PollSender::new(outbound), closed: false }
    }
}

/// How long a finished connection's stream is kept to let the last bytes
/// reach the guest before it is reset.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

impl Drop for GuestIo {
    /// Dropping the response stream would reset the whole HTTP/2 stream, and
    /// with it the last bytes still queued for the guest (a 403's body, a
    /// response sent just before `Connection: close`). So the stream is read
    /// to its end in the background instead, for at most [`LINGER`]: the
    /// agent ends it once the guest has closed its side too.
    fn drop(&mut self) {
        let Some(mut inbound) = self.inbound.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(LINGER, async { while let Ok(Some(_)) = inbound.message().await {} }).await;
            });
        }
    }
}

fn request(kind: RequestKind) -> ForwardRequest {
    ForwardRequest { kind: Some(kind) }
}

impl AsyncRead for GuestIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if super::chunked::give(&mut self.pending, buf) {
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            let Some(inbound) = self.inbound.as_mut() else { return Poll::Ready(Ok(())) };
            match ready!(Pin::new(inbound).poll_next(cx)) {
                Some(Ok(ForwardResponse { kind: Some(Kind::Data(data)) })) => self.pending = data,
                Some(Ok(ForwardResponse { kind: Some(Kind::CloseWrite(_)) })) => self.eof = true,
                None => {
                    // The stream is over: nothing to linger for.
                    self.eof = true;
                    self.inbound = None;
                }
                Some(Ok(_)) => {}
                Some(Err(status)) => {
                    self.eof = true;
                    self.inbound = None;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, status.message().to_owned())));
                }
            }
        }
    }
}

impl AsyncWrite for GuestIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let closed = self.closed;
        super::chunked::send(&mut self.outbound, cx, closed, buf, DOWN_CHUNK, |data| request(RequestKind::Data(data)))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        ready!(super::chunked::finish(&mut self.outbound, cx, || request(RequestKind::CloseWrite(CloseWrite {}))))?;
        self.closed = true;
        Poll::Ready(Ok(()))
    }
}

/// A stream that counts the bytes read from it (up: from the guest) and
/// written to it (down: to the guest).
pub struct Counted<T> {
    inner: T,
    counters: Counters,
}

impl<T> Counted<T> {
    /// `inner`, counted into `counters`.
    pub fn new(inner: T, counters: Counters) -> Counted<T> {
        Counted { inner, counters }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.counters.up.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.counters.down.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
