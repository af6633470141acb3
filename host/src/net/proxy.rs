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

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::ask::{Answer, MAX_PENDING, Outcome, Question};
use super::body::{ProxyBody, empty};
use super::context::{Context, answer};
use super::exchange::{SendError, host_header, relay_response, send, strip_hop_by_hop};
use super::guest_io::Counters;
use super::policy::{NOT_LISTED, Verdict};
use super::secrets::{Misuse, Secrets};
use super::sni::{self, Opening, Peeked};
use super::upstream::Connected;
use crate::audit::{self, Asked, Egress, What};
use crate::config::pattern::normalize_host;
use crate::untrusted::text;

/// How long a guest has, after CONNECT, to send its first bytes.
const OPENING_TIMEOUT: Duration = Duration::from_secs(30);

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
    let explicit = match decide(&ctx, &mut event, start).await {
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
            Err(e) => {
                tracing::debug!("CONNECT {}:{port}: the guest left before the tunnel opened: {e}", crate::untrusted::text::shown(&host))
            }
        }
    });
    Response::new(empty())
}

/// The policy's verdict on `event`'s host (after asking a person, in
/// `mode = "ask"`): whether the rule that allows it names the host itself,
/// or the guest's 403.
async fn decide(ctx: &Context, event: &mut Egress, start: Instant) -> Result<bool, Box<Response<ProxyBody>>> {
    let verdict = match ctx.policy().decide(&event.host, event.port) {
        Verdict::Ask => ask(ctx, event).await,
        verdict => verdict,
    };
    match verdict {
        Verdict::Allow { rule, explicit } => {
            event.rule = Some(rule);
            Ok(explicit)
        }
        Verdict::Deny { reason } => Err(Box::new(ctx.refuse(event.clone(), StatusCode::FORBIDDEN, reason, start))),
        Verdict::Ask => Err(Box::new(ctx.refuse(event.clone(), StatusCode::FORBIDDEN, NOT_LISTED.into(), start))),
    }
}

/// Holds the request while a person decides (see [`super::ask`]); the
/// verdict they gave, or the allow list's refusal.
async fn ask(ctx: &Context, event: &Egress) -> Verdict {
    let raised = |q: &Question| {
        let asked = Asked { id: q.id, host: q.host.clone(), port: q.port, method: q.method.clone(), timeout_ms: q.timeout_ms };
        tracing::info!("{} {}:{}: asking", text::shown(&q.method), text::shown(&q.host), q.port);
        ctx.log_event(What::Ask(asked));
    };
    match ctx.asks.ask(&event.host, event.port, &event.method, raised).await {
        Outcome::Answered(Answer::Once { by }) => Verdict::Allow { rule: format!("allowed once when asked ({by})"), explicit: true },
        Outcome::Answered(Answer::Rule { rule, explicit }) => Verdict::Allow { rule, explicit },
        Outcome::Answered(Answer::Deny { reason }) => Verdict::Deny { reason },
        Outcome::TimedOut(waited) => Verdict::Deny { reason: format!("{NOT_LISTED} (asked; no answer within {} s)", waited.as_secs()) },
        Outcome::NoOne => Verdict::Deny { reason: format!("{NOT_LISTED} (ask mode, but no terminal was watching to answer)") },
        Outcome::TooMany => {
            Verdict::Deny { reason: format!("{NOT_LISTED} (ask mode: {MAX_PENDING} other requests are already waiting for an answer)") }
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
                tracing::debug!("reading the first bytes of a tunnel to {}: {e}", crate::untrusted::text::shown(&event.host));
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
    let registered = ctx.active.register(&event.host, event.port);
    if matches!(opening, Opening::Tls(_)) && ctx.secrets().intercepts(&event.host) {
        let counters = Counters::default();
        let guest = super::guest_io::Counted::new(Peeked::new(prefix, guest), counters.clone());
        event.intercepted = true;
        tokio::select! {
            () = super::intercept::serve(ctx.clone(), guest, server, &event, explicit) => {}
            reason = registered.cancelled() => event.reason = Some(reason),
        }
        let (up, down) = counters.get();
        (event.bytes_up, event.bytes_down) = (up, down);
    } else {
        let counters = Counters::default();
        let mut guest = super::guest_io::Counted::new(guest, counters.clone());
        let copied = async {
            server.write_all(&prefix).await?;
            super::relay::copy(&mut guest, &mut server).await
        };
        tokio::select! {
            copied = copied => if let Err(e) = copied {
                tracing::debug!("tunnel to {}:{} ended: {e}", event.host, event.port);
            },
            reason = registered.cancelled() => event.reason = Some(reason),
        }
        let (up, down) = counters.get();
        (event.bytes_up, event.bytes_down) = (up + prefix.len() as u64, down);
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
    let explicit = match decide(&ctx, &mut event, start).await {
        Ok(explicit) => explicit,
        Err(refused) => return *refused,
    };
    if let Some(misuse) = placeholder_in(&ctx.secrets(), &host, &request) {
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
    let registered = ctx.active.register(&host, port);
    match send(&mut sender, parts, body, ctx.secrets(), &counters).await {
        Ok(response) => relay_response(&ctx, response, event, counters, start, registered),
        Err(SendError::Placeholder(misuse)) => ctx.refuse(event, StatusCode::FORBIDDEN, misuse.reason(&host), start),
        Err(SendError::Server(e)) => ctx.refuse(event, StatusCode::BAD_GATEWAY, format!("{host}:{port} did not answer: {e}"), start),
    }
}

/// A placeholder in a plain-HTTP request's URL or headers: refused
/// whichever host it is for (its body is searched as it is sent).
fn placeholder_in(secrets: &Secrets, host: &str, request: &Request<Incoming>) -> Option<Misuse> {
    if let Some(found) = secrets.find(&request.uri().to_string()) {
        return Some(Misuse::InUrl { name: found.name.clone() });
    }
    let values = request.headers().values().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let found = values.into_iter().find_map(|text| secrets.find(&text).cloned())?;
    Some(if found.allowed_for(host) { Misuse::Plaintext { name: found.name } } else { Misuse::WrongHost { name: found.name } })
}
