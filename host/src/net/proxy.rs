//! One guest connection served as an HTTP proxy: `CONNECT host:port` for
//! TLS and other tunnels, absolute-URI requests (`GET http://host/…`) for
//! plain HTTP. Each request is decided by the policy, opened by
//! `upstream` (resolve on the host, check the address), and written to the
//! audit log once it is over.
//!
//! A refusal is an HTTP 403 whose reason phrase and body name the host and
//! the configuration line that would allow it: the reason phrase is what
//! most clients print when a CONNECT fails (they never show its body).
//!
//! After a CONNECT, the first bytes decide: a TLS ClientHello must name the
//! CONNECT host (SNI), and is intercepted when the host has secrets;
//! anything else is relayed untouched.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::body::{Metered, ProxyBody, Record, empty, full};
use super::ca::Authority;
use super::guest_io::Counters;
use super::pattern::normalize_host;
use super::policy::{Policy, Verdict};
use super::secrets::{Misuse, Secrets};
use super::sni::{self, Opening, Peeked};
use super::upstream::{Connected, Upstream};
use crate::audit::{self, Egress, Log, What};
use crate::untrusted::text;

/// How long a guest has, after CONNECT, to send its first bytes.
const OPENING_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection of one VM is served with.
pub struct Context {
    /// The egress policy.
    pub policy: Policy,
    /// The VM's secrets.
    pub secrets: Secrets,
    /// How to reach the host side.
    pub upstream: Upstream,
    /// The VM's CA, when it has secrets to intercept for.
    pub authority: Option<Authority>,
    /// TLS towards real servers, verified against the host's store.
    pub client_tls: Arc<rustls::ClientConfig>,
    /// The VM's audit log.
    pub audit: Log,
}

impl Context {
    /// Writes a finished egress event.
    pub fn log(&self, event: Egress) {
        self.audit.append(What::Egress(event));
    }

    /// Logs `event` as refused for `reason`, and answers the guest `status`
    /// with the reason and what to do about it: a 403 of a request no rule
    /// allows (`event.rule` unset) says which line to add.
    pub fn refuse(&self, mut event: Egress, status: StatusCode, reason: String, start: Instant) -> Response<ProxyBody> {
        let (short, advice) = if status == StatusCode::FORBIDDEN && event.rule.is_none() {
            (self.policy.short_advice(&event.host, event.port, &reason), self.policy.advice(&event.host, event.port, &reason))
        } else {
            let line = format!("{}:{}: {reason}", event.host, event.port);
            (line.clone(), format!("hutch: {line}\n"))
        };
        event.decision = if status == StatusCode::FORBIDDEN { "deny" } else { "allow" }.into();
        event.reason = Some(reason.clone());
        event.status = Some(status.as_u16());
        event.duration_ms = audit::millis(start.elapsed());
        tracing::info!("{} {}:{}: {}", text::shown(&event.method), text::shown(&event.host), event.port, text::shown(&reason));
        self.log(event);
        answer(status, &short, advice)
    }
}

/// hutch's own answer: `status` with `reason` in the status line (made
/// printable) and `body` as text.
pub fn answer(status: StatusCode, reason: &str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let phrase: String = format!("{} (hutch: {reason})", status.canonical_reason().unwrap_or("Refused"))
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(400)
        .collect();
    if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(phrase.into_bytes()) {
        response.extensions_mut().insert(phrase);
    }
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves one guest connection until the guest closes it.
pub async fn serve<T>(io: T, ctx: Arc<Context>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(ctx, request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).with_upgrades().await;
    if let Err(e) = served {
        tracing::debug!("guest connection ended: {e}");
    }
}

async fn handle(ctx: Arc<Context>, request: Request<Incoming>) -> Response<ProxyBody> {
    if request.method() == Method::CONNECT {
        connect(ctx, request).await
    } else if request.uri().scheme().is_some() {
        forward(ctx, request).await
    } else {
        let body = "hutch: this is the VM's egress proxy; send requests through it (HTTP_PROXY / HTTPS_PROXY), not to it\n";
        answer(StatusCode::BAD_REQUEST, "not a proxy request", body.into())
    }
}

/// The host and port a request names, normalized; default `port`.
fn target(authority: Option<&hyper::http::uri::Authority>, default_port: u16) -> Option<(String, u16)> {
    let authority = authority?;
    Some((normalize_host(authority.host())?, authority.port_u16().unwrap_or(default_port)))
}

async fn connect(ctx: Arc<Context>, request: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let Some((host, port)) = target(request.uri().authority(), 443) else {
        return answer(StatusCode::BAD_REQUEST, "CONNECT needs host:port", "hutch: CONNECT needs a host and a port\n".into());
    };
    let mut event = Egress { host: host.clone(), port, method: "CONNECT".into(), ..Egress::default() };
    let explicit = match decide(&ctx, &mut event, start) {
        Ok(explicit) => explicit,
        Err(refused) => return *refused,
    };
    let connected = match open(&ctx, &mut event, explicit, start).await {
        Ok(connected) => connected,
        Err(refused) => return *refused,
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => tunnel(ctx, TokioIo::new(upgraded), connected.stream, event, explicit, start).await,
            Err(e) => tracing::debug!("CONNECT {host}:{port}: the guest left before the tunnel opened: {e}"),
        }
    });
    Response::new(empty())
}

/// The policy's verdict on `event`'s host: whether the rule that allows it
/// names the host itself, or the guest's 403.
fn decide(ctx: &Context, event: &mut Egress, start: Instant) -> Result<bool, Box<Response<ProxyBody>>> {
    match ctx.policy.decide(&event.host, event.port) {
        Verdict::Deny { reason } => Err(Box::new(ctx.refuse(event.clone(), StatusCode::FORBIDDEN, reason, start))),
        Verdict::Allow { rule, explicit } => {
            event.rule = Some(rule);
            Ok(explicit)
        }
    }
}

/// Opens the host side of an allowed request (resolved and checked on the
/// host), recording where it went; or the guest's 403 (a restricted
/// address) or 502 (unreachable).
async fn open(ctx: &Context, event: &mut Egress, explicit: bool, start: Instant) -> Result<Connected, Box<Response<ProxyBody>>> {
    match ctx.upstream.connect(&event.host, event.port, explicit).await {
        Ok(connected) => {
            event.addr = Some(connected.addr.clone());
            event.decision = "allow".into();
            Ok(connected)
        }
        Err(refusal) if refusal.is_policy() => {
            event.rule = None;
            Err(Box::new(ctx.refuse(event.clone(), StatusCode::FORBIDDEN, refusal.reason(&event.host), start)))
        }
        Err(refusal) => Err(Box::new(ctx.refuse(event.clone(), StatusCode::BAD_GATEWAY, refusal.reason(&event.host), start))),
    }
}

/// After a CONNECT: checks the ClientHello's name, then intercepts (a host
/// with secrets) or relays the bytes untouched; logs the tunnel at its end.
async fn tunnel<G>(ctx: Arc<Context>, mut guest: G, mut server: tokio::net::TcpStream, mut event: Egress, explicit: bool, start: Instant)
where
    G: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // TLS clients speak first; a server that speaks first (SSH, SMTP) means
    // some other protocol, relayed as it is.
    let mut prefix = Vec::new();
    let opening = tokio::select! {
        read = tokio::time::timeout(OPENING_TIMEOUT, sni::read_opening(&mut guest, &mut prefix)) => match read {
            Ok(Ok(opening)) => opening,
            Ok(Err(e)) => {
                tracing::debug!("reading the first bytes of a tunnel to {}: {e}", event.host);
                Opening::Other
            }
            Err(_) => Opening::Other,
        },
        _ = server.readable() => Opening::Other,
    };
    if let Opening::Tls(Some(name)) = &opening
        && normalize_host(name).as_deref() != Some(event.host.as_str())
    {
        event.decision = "deny".into();
        event.reason = Some(format!("the TLS server name {name:?} is not the CONNECT host {}", event.host));
        event.duration_ms = audit::millis(start.elapsed());
        ctx.log(event);
        return;
    }
    if matches!(opening, Opening::Tls(_)) && ctx.secrets.intercepts(&event.host) {
        let counters = Counters::default();
        let guest = super::guest_io::Counted::new(Peeked::new(prefix, guest), counters.clone());
        event.intercepted = true;
        super::intercept::serve(ctx.clone(), guest, server, &event, explicit).await;
        let (up, down) = counters.get();
        (event.bytes_up, event.bytes_down) = (up, down);
    } else {
        let sent = server.write_all(&prefix).await;
        let copied = match sent {
            Ok(()) => tokio::io::copy_bidirectional(&mut guest, &mut server).await,
            Err(e) => Err(e),
        };
        match copied {
            Ok((up, down)) => (event.bytes_up, event.bytes_down) = (up + prefix.len() as u64, down),
            Err(e) => {
                tracing::debug!("tunnel to {}:{} ended: {e}", event.host, event.port);
                event.bytes_up = prefix.len() as u64;
            }
        }
    }
    event.duration_ms = audit::millis(start.elapsed());
    ctx.log(event);
}

/// A plain-HTTP request: decided, checked for placeholders (real values
/// never travel without TLS), sent to the server in origin form.
async fn forward(ctx: Arc<Context>, request: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let method = request.method().to_string();
    if request.uri().scheme_str() != Some("http") {
        let why = "only http:// URLs are proxied this way; https goes through CONNECT";
        return answer(StatusCode::BAD_REQUEST, why, format!("hutch: {why}\n"));
    }
    let Some((host, port)) = target(request.uri().authority(), 80) else {
        return answer(StatusCode::BAD_REQUEST, "no host in the URL", "hutch: the URL names no host\n".into());
    };
    let path = request.uri().path().to_owned();
    let mut event = Egress { host: host.clone(), port, method, path: Some(path), ..Egress::default() };
    let explicit = match decide(&ctx, &mut event, start) {
        Ok(explicit) => explicit,
        Err(refused) => return *refused,
    };
    if let Some(misuse) = placeholder_in(&ctx.secrets, &host, &request) {
        return ctx.refuse(event, StatusCode::FORBIDDEN, misuse.reason(&host), start);
    }
    let connected = match open(&ctx, &mut event, explicit, start).await {
        Ok(connected) => connected,
        Err(refused) => return *refused,
    };
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(connected.stream)).await {
        Ok(pair) => pair,
        Err(e) => return ctx.refuse(event, StatusCode::BAD_GATEWAY, format!("HTTP with {host}:{port} failed: {e}"), start),
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    let counters = Counters::default();
    let (mut parts, body) = request.into_parts();
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str().parse().unwrap_or_else(|_| hyper::Uri::from_static("/")),
        None => hyper::Uri::from_static("/"),
    };
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST)
        && let Ok(value) = HeaderValue::from_str(&host_header(&host, port, 80))
    {
        parts.headers.insert(header::HOST, value);
    }
    let body = Metered::new(body, counters.up.clone()).boxed();
    match send(&mut sender, Request::from_parts(parts, body)).await {
        Ok(response) => relay_response(&ctx, response, event, counters, start),
        Err(e) => ctx.refuse(event, StatusCode::BAD_GATEWAY, format!("{host}:{port} did not answer: {e}"), start),
    }
}

/// Sends one request on an HTTP/1.1 connection once it is ready.
pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<ProxyBody>,
    request: Request<ProxyBody>,
) -> hyper::Result<Response<Incoming>> {
    sender.ready().await?;
    sender.send_request(request).await
}

/// The server's answer, passed to the guest with its body counted and the
/// request's audit line written once the body is through.
pub fn relay_response(
    ctx: &Context,
    response: Response<Incoming>,
    mut event: Egress,
    counters: Counters,
    start: Instant,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    event.status = Some(parts.status.as_u16());
    let record = Record { log: ctx.audit.clone(), event, counters: counters.clone(), start };
    let body = Metered::new(body, counters.down).with_record(record).boxed();
    Response::from_parts(parts, body)
}

/// The `Host` header for `host:port` (the port left out when it is the scheme's).
pub fn host_header(host: &str, port: u16, default_port: u16) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    if port == default_port { host } else { format!("{host}:{port}") }
}

/// Removes the headers that concern one hop only (RFC 9110 §7.6.1), and the
/// ones the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in ["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade"] {
        headers.remove(name);
    }
}

/// A placeholder in a plain-HTTP request: refused whichever host it is for.
fn placeholder_in(secrets: &Secrets, host: &str, request: &Request<Incoming>) -> Option<Misuse> {
    let uri = request.uri().to_string();
    let values = request.headers().values().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let found = std::iter::once(uri).chain(values).find_map(|text| secrets.find(&text).cloned())?;
    Some(if found.allowed_for(host) { Misuse::Plaintext { name: found.name } } else { Misuse::WrongHost { name: found.name } })
}
