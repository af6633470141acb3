//! TLS interception for the hosts that have secrets, and only those.
//!
//! The guest's TLS is terminated with a certificate of the VM's CA for the
//! host it asked for (HTTP/1.1 only in ALPN), each request is read as HTTP,
//! its placeholders are swapped for real values in its headers (a
//! placeholder out of its secret's scope, in the URL or in the body refuses
//! the request: see `secrets`), and it is sent on a new TLS connection to
//! the real server, verified against the host's trust store. One audit line
//! per request names the secrets it carried (never their values).
//!
//! Not intercepted: WebSocket upgrades (refused with 501: say so rather
//! than break silently).

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::body::ProxyBody;
use super::context::Context;
use super::exchange::{SendError, host_header, relay_response, send, strip_hop_by_hop};
use super::guest_io::Counters;
use super::secrets::{Misuse, Secrets};
use crate::audit::Egress;

/// The server side of one intercepted connection: opened at the first
/// request (so a failure can be told to the guest as an HTTP answer), and
/// again if the server closes it between requests.
struct Server {
    /// The TCP connection opened when the CONNECT was allowed, until used.
    fresh: Option<TcpStream>,
    sender: Option<SendRequest<ProxyBody>>,
    /// The rule that allowed the host names it (so it may be a private address).
    explicit: bool,
}

/// Serves the intercepted connection `guest` (its ClientHello not yet
/// consumed) until the guest closes it. `tunnel` is the CONNECT's event,
/// `explicit` whether the rule that allowed it names the host itself.
pub async fn serve<G>(ctx: Arc<Context>, guest: G, server: TcpStream, tunnel: &Egress, explicit: bool)
where
    G: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let host = tunnel.host.clone();
    // The guest chose the name: escaped wherever it reaches the log.
    let shown = crate::untrusted::text::shown(&host);
    let leaf = match ctx.authority.as_ref().map(|ca| ca.leaf(&host)) {
        Some(Ok(leaf)) => leaf,
        Some(Err(e)) => return tracing::warn!("cannot intercept {shown}: {e}"),
        None => return tracing::warn!("cannot intercept {shown}: the VM has no CA"),
    };
    let config = match super::tls::server_config(leaf) {
        Ok(config) => config,
        Err(e) => return tracing::warn!("cannot intercept {shown}: {e}"),
    };
    let tls = match TlsAcceptor::from(config).accept(guest).await {
        Ok(tls) => tls,
        Err(e) => {
            // Typically a guest program that does not trust the VM's CA.
            return tracing::info!("TLS with the guest for {shown} failed: {e} (does the program trust the VM's CA bundle?)");
        }
    };
    let state = Arc::new(Mutex::new(Server { fresh: Some(server), sender: None, explicit }));
    let tunnel = tunnel.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let (ctx, state, tunnel) = (ctx.clone(), state.clone(), tunnel.clone());
        async move { Ok::<_, std::convert::Infallible>(one_request(ctx, state, &tunnel, request).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await {
        tracing::debug!("intercepted connection to {shown} ended: {e}");
    }
}

async fn one_request(ctx: Arc<Context>, state: Arc<Mutex<Server>>, tunnel: &Egress, request: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let (host, port) = (tunnel.host.clone(), tunnel.port);
    let mut event = Egress {
        host: host.clone(),
        port,
        method: request.method().to_string(),
        path: Some(request.uri().path().to_owned()),
        decision: "allow".into(),
        rule: tunnel.rule.clone(),
        addr: tunnel.addr.clone(),
        intercepted: true,
        ..Egress::default()
    };
    if request.headers().contains_key(header::UPGRADE) {
        let why = format!("hutch intercepts {host} to add secrets and cannot relay protocol upgrades (WebSocket) there");
        return ctx.refuse(event, StatusCode::NOT_IMPLEMENTED, why, start);
    }
    let (mut parts, body) = request.into_parts();
    let secrets = ctx.secrets();
    match rewrite(&secrets, &host, &mut parts) {
        Ok(injected) => event.secrets = injected,
        Err(misuse) => return ctx.refuse(event, StatusCode::FORBIDDEN, misuse.reason(&host), start),
    }
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST)
        && let Ok(value) = HeaderValue::from_str(&host_header(&host, port, 443))
    {
        parts.headers.insert(header::HOST, value);
    }
    let counters = Counters::default();
    let mut server = state.lock().await;
    let sender = match ready_sender(&ctx, &mut server, &host, port).await {
        Ok(sender) => sender,
        Err(why) => return ctx.refuse(event, StatusCode::BAD_GATEWAY, why, start),
    };
    let registered = ctx.active.register(&host, port);
    match send(sender, parts, body, secrets, &counters).await {
        Ok(response) => relay_response(&ctx, response, event, counters, start, registered),
        Err(SendError::Placeholder(misuse)) => {
            // The server has a request cut short: this connection is done.
            server.sender = None;
            ctx.refuse(event, StatusCode::FORBIDDEN, misuse.reason(&host), start)
        }
        Err(SendError::Server(e)) => {
            server.sender = None;
            ctx.refuse(event, StatusCode::BAD_GATEWAY, format!("{host}:{port} did not answer: {e}"), start)
        }
    }
}

/// Swaps placeholders in the headers; the names of the secrets added. A
/// placeholder in the URL (path or query) refuses the request.
fn rewrite(secrets: &Secrets, host: &str, parts: &mut hyper::http::request::Parts) -> Result<Vec<String>, Misuse> {
    if let Some(secret) = secrets.find(&parts.uri.to_string()) {
        return Err(Misuse::InUrl { name: secret.name.clone() });
    }
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let mut injected: Vec<String> = Vec::new();
    for value in parts.headers.values_mut() {
        let Ok(text) = value.to_str() else {
            // Not text: a placeholder in it cannot be swapped, so none may be there.
            if let Some(secret) = secrets.find(&String::from_utf8_lossy(value.as_bytes())) {
                return Err(Misuse::WrongHost { name: secret.name.clone() });
            }
            continue;
        };
        let (new, names) = secrets.rewrite(host, &method, &path, text)?;
        if !names.is_empty()
            && let Ok(mut swapped) = HeaderValue::from_str(&new)
        {
            swapped.set_sensitive(true);
            *value = swapped;
            injected.extend(names.into_iter().filter(|n| !injected.contains(n)).collect::<Vec<_>>());
        }
    }
    Ok(injected)
}

/// The server connection, opened (TCP reused or new, then verified TLS) if
/// there is none or the last one closed.
async fn ready_sender<'a>(ctx: &Context, server: &'a mut Server, host: &str, port: u16) -> Result<&'a mut SendRequest<ProxyBody>, String> {
    if server.sender.as_ref().is_none_or(SendRequest::is_closed) {
        let tcp = match server.fresh.take() {
            Some(tcp) => tcp,
            // Resolved and checked again: the name may point elsewhere now.
            None => ctx.upstream.connect(host, port, server.explicit).await.map_err(|r| r.reason(host))?.stream,
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        let tls = TlsConnector::from(ctx.client_tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port} failed (verified against the host's trust store): {e}"))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP with {host}:{port} failed: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("intercepted upstream connection ended: {e}");
            }
        });
        server.sender = Some(sender);
    }
    server.sender.as_mut().ok_or_else(|| "no connection".to_owned())
}
