//! The HTTP/2 connection a gRPC client runs on, straight from hyper.
//!
//! tonic's `Channel` is built for long-lived clients of remote services: it
//! queues every request through a worker task and knows how to reconnect.
//! hutch opens one connection per command to an agent it has just located, so
//! none of that helps, and the queue is one more hand-off on the path of
//! every call. This connection also sets what `Channel` does not let a client
//! set: the largest frame the agent may send (its bulk output arrives in
//! 256 KiB chunks) and the flow-control windows.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hutch_proto::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW};
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};

use super::Stream;

/// One HTTP/2 connection to an agent; cheap to clone (clones share it).
#[derive(Clone)]
pub struct Connection {
    sender: SendRequest<Body>,
}

impl Connection {
    /// Runs the HTTP/2 handshake over `stream` and drives the connection on
    /// a background task until every clone of the returned handle is gone.
    pub async fn handshake(stream: Box<dyn Stream>) -> hyper::Result<Connection> {
        let (connection, driver) = Connection::open(stream, None).await?;
        tokio::spawn(driver);
        Ok(connection)
    }

    /// The handshake alone: the returned future drives the connection and
    /// ends when it does, for the caller to spawn and watch. With
    /// `keepalive`, the agent is pinged after that long without traffic and
    /// the connection is given up when a ping goes unanswered as long, so a
    /// long-lived connection notices a VM that froze or vanished.
    pub async fn open(
        stream: Box<dyn Stream>,
        keepalive: Option<Duration>,
    ) -> hyper::Result<(Connection, impl Future<Output = ()> + Send + 'static)> {
        let mut builder = Builder::new(TokioExecutor::new());
        builder.max_frame_size(MAX_FRAME_SIZE).initial_stream_window_size(STREAM_WINDOW).initial_connection_window_size(CONNECTION_WINDOW);
        if let Some(interval) = keepalive {
            builder.timer(TokioTimer::new()).keep_alive_interval(interval).keep_alive_timeout(interval).keep_alive_while_idle(true);
        }
        let (sender, connection) = builder.handshake(TokioIo::new(stream)).await?;
        let driver = async move {
            if let Err(e) = connection.await {
                tracing::debug!("agent connection ended: {e}");
            }
        };
        Ok((Connection { sender }, driver))
    }
}

impl tower::Service<Request<Body>> for Connection {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = hyper::Result<Response<Incoming>>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(self.sender.send_request(request))
    }
}
