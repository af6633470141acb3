//! HTTP bodies of proxied requests: boxed so hutch's own answers and
//! streamed ones share a type, counted for the audit log, and an audit
//! record written when a response body is done (or dropped), so its line has
//! the bytes and the duration of the whole exchange. A response body also
//! ends when a policy change cuts its connection; a request body is
//! searched for secrets' placeholders on its way out ([`Scanned`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::guest_io::Counters;
use super::secrets::Secrets;
use crate::audit::{self, Egress, Log, What};

/// A body's failure: hyper's, or hutch's own (a placeholder found, a cut).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends or relays.
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// A body of fixed bytes (hutch's own answers).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// `body` (hyper's) as a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BodyError>,
{
    body.map_err(Into::into).boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// A body whose data bytes are added to a counter as they pass, that may
/// carry an audit record to write when it is dropped, and that ends with an
/// error when its connection is cut.
pub struct Metered<B> {
    inner: B,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    record: Option<Record>,
    cut: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl<B> Metered<B> {
    /// `inner`, counted into `counter`.
    pub fn new(inner: B, counter: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Metered<B> {
        Metered { inner, counter, record: None, cut: None }
    }

    /// Writes `record` when this body is dropped.
    pub fn with_record(mut self, record: Record) -> Metered<B> {
        self.record = Some(record);
        self
    }

    /// Ends the body when `token` is cancelled.
    pub fn cut_by(mut self, token: CancellationToken) -> Metered<B> {
        self.cut = Some(Box::pin(token.cancelled_owned()));
        self
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(cut) = self.cut.as_mut()
            && cut.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err("the connection was cut by a policy change".into())));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into);
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

/// A request body searched for secrets' placeholders: one found ends the
/// body with an error before the chunk holding it goes out, and names the
/// secret in `found` (a placeholder cut across chunks is found in the
/// second: the end of each chunk is kept for the next search).
pub struct Scanned<B> {
    inner: B,
    secrets: Arc<Secrets>,
    keep: usize,
    tail: Vec<u8>,
    found: Arc<Mutex<Option<String>>>,
}

impl<B> Scanned<B> {
    /// `inner`, searched for `secrets`' placeholders; the secret found goes into `found`.
    pub fn new(inner: B, secrets: Arc<Secrets>, found: Arc<Mutex<Option<String>>>) -> Scanned<B> {
        let keep = secrets.longest().saturating_sub(1);
        Scanned { inner, secrets, keep, tail: Vec::new(), found }
    }
}

impl<B> Body for Scanned<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let Some(Ok(frame)) = polled else { return Poll::Ready(polled.map(|r| r.map_err(Into::into))) };
        if let Some(data) = frame.data_ref().filter(|_| self.keep > 0) {
            let mut window = std::mem::take(&mut self.tail);
            window.extend_from_slice(data);
            if let Some(secret) = self.secrets.find_bytes(&window) {
                *self.found.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(secret.name.clone());
                return Poll::Ready(Some(Err(format!("the placeholder of secret {} is in the request body", secret.name).into())));
            }
            let from = window.len().saturating_sub(self.keep);
            window.drain(..from);
            self.tail = window;
        }
        Poll::Ready(Some(Ok(frame)))
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
    /// Its place among the open connections, given up with it.
    pub registered: Option<super::active::Registered>,
}

impl Drop for Record {
    fn drop(&mut self) {
        let (up, down) = self.counters.get();
        let mut event = std::mem::take(&mut self.event);
        if let Some(reason) = self.registered.as_ref().and_then(super::active::Registered::reason) {
            event.reason = Some(reason);
        }
        event.bytes_up = up;
        event.bytes_down = down;
        event.duration_ms = audit::millis(self.start.elapsed());
        self.log.append(What::Egress(event));
    }
}
