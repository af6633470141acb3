//! `hutch mux --name NAME`: the multiplexer process itself.
//!
//! One instance per VM, guaranteed by the daemon lock it claims
//! (`crate::daemon::Daemon::claim`, released when it exits); a crash leaves
//! nothing stale (a later multiplexer replaces the old socket).

use std::convert::Infallible;
use std::time::Duration;

use hutch_proto::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixListener;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::codegen::http::header::{AUTHORIZATION, CONTENT_TYPE};
use tonic::codegen::http::{HeaderValue, Request, Response};
use tower::Service;

use super::MuxError;
use crate::state::{StateDir, VmName};
use crate::transport::{self, BearerToken, Connection};

/// A multiplexer with no client for this long leaves.
pub const IDLE: Duration = Duration::from_secs(15 * 60);

/// Without traffic, the agent is pinged this often, and given up on when a
/// ping goes unanswered this long: a frozen VM ends its multiplexer.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// Serves VM `name` until its agent connection ends or no client came for
/// [`IDLE`]. Returns at once (0) when another multiplexer already serves it.
pub async fn run(name: &VmName) -> Result<u8, MuxError> {
    let state = StateDir::from_env()?;
    let dir = state.vm_dir(name);
    let Some(_claim) = super::daemon(&dir).claim().map_err(|e| MuxError::local("locking the multiplexer's lock", e))? else {
        return Ok(0);
    };
    tokio::spawn(crate::daemon::bound_own_log(super::daemon(&dir).log().to_path_buf(), crate::untrusted::limits::NET_LOG_BYTES));
    let record = state.load(name)?;
    let (addr, token) = (record.agent_addr()?, BearerToken::load(record.token_file.as_deref())?);
    let (upstream, driver) = transport::open(addr, &token, KEEPALIVE).await?;
    let mut driver = std::pin::pin!(driver);
    let socket = super::socket_path(&dir);
    let listener = hutch_proto::unix_socket::bind_private(&socket)
        .and_then(UnixListener::from_std)
        .map_err(|e| MuxError::local("binding the multiplexer's socket", e))?;
    eprintln!("hutch mux {}: relaying {} to {addr}", std::process::id(), socket.display());
    announce_ready()?;
    let token = token.header_value();

    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    clients.spawn(relay(stream, upstream.clone(), token.clone()));
                }
                Err(e) => tracing::warn!("accepting a client failed: {e}"),
            },
            Some(_) = clients.join_next() => {}
            () = &mut driver => {
                eprintln!("hutch mux {}: the agent connection ended; leaving", std::process::id());
                break;
            }
            () = tokio::time::sleep(IDLE), if clients.is_empty() => {
                eprintln!("hutch mux {}: no client for {} s; leaving", std::process::id(), IDLE.as_secs());
                break;
            }
        }
    }
    // Remove the socket before the lock goes: a new multiplexer takes the
    // lock first, then binds its own socket in place.
    let _ = std::fs::remove_file(&socket);
    Ok(0)
}

/// Tells whoever started us that we serve: [`super::READY`] on stdout,
/// which is the multiplexer's log.
fn announce_ready() -> Result<(), MuxError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", super::READY).and_then(|()| stdout.flush()).map_err(|e| MuxError::local("announcing the multiplexer", e))
}

/// Serves one client connection: each of its calls becomes a stream on the
/// shared agent connection, with the token added when the agent needs one.
async fn relay(stream: tokio::net::UnixStream, upstream: Connection, token: Option<HeaderValue>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let mut upstream = upstream.clone();
        let token = token.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            tracing::debug!("relaying {}", parts.uri.path());
            if let Some(token) = token {
                parts.headers.insert(AUTHORIZATION, token);
            }
            let forwarded = async {
                std::future::poll_fn(|cx| upstream.poll_ready(cx)).await?;
                upstream.call(Request::from_parts(parts, Body::new(body))).await
            };
            Ok::<_, Infallible>(match forwarded.await {
                Ok(response) => response.map(Body::new),
                Err(e) => unavailable(&e),
            })
        }
    });
    let served = http2::Builder::new(TokioExecutor::new())
        .max_frame_size(MAX_FRAME_SIZE)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!("client connection ended: {e}");
    }
}

/// A gRPC "unavailable" answer for a call the agent connection could not carry.
fn unavailable(error: &hyper::Error) -> Response<Body> {
    let message = format!("the VM's agent connection failed: {error}");
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static("14"));
    if let Ok(value) = HeaderValue::from_str(&message.replace(['\r', '\n'], " ")) {
        headers.insert("grpc-message", value);
    }
    response
}
