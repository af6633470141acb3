//! HTTP bodies of proxied requests: boxed so hutch's own answers and
//! streamed ones share a type, counted for the audit log, and an audit
//! record written when a response body is done (or dropped), so its line has
//! the bytes and the duration of the whole exchange.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};

use super::guest_io::Counters;
use crate::audit::{self, Egress, Log, What};

/// Every body the proxy sends or relays.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A body of fixed bytes (hutch's own answers).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// A body whose data bytes are added to a counter as they pass, and that
/// may carry an audit record to write when it is dropped.
pub struct Metered<B> {
    inner: B,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    record: Option<Record>,
}

impl<B> Metered<B> {
    /// `inner`, counted into `counter`.
    pub fn new(inner: B, counter: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Metered<B> {
        Metered { inner, counter, record: None }
    }

    /// Writes `record` when this body is dropped.
    pub fn with_record(mut self, record: Record) -> Metered<B> {
        self.record = Some(record);
        self
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Metered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An egress event whose bytes and duration are filled in at the end.
pub struct Record {
    /// The audit log.
    pub log: Log,
    /// The event so far.
    pub event: Egress,
    /// Its byte counters.
    pub counters: Counters,
    /// When the request came.
    pub start: Instant,
}

impl Drop for Record {
    fn drop(&mut self) {
        let (up, down) = self.counters.get();
        let mut event = std::mem::take(&mut self.event);
        event.bytes_up = up;
        event.bytes_down = down;
        event.duration_ms = audit::millis(self.start.elapsed());
        self.log.append(What::Egress(event));
    }
}
