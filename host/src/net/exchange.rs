//! One HTTP request sent on to a server and its answer relayed to the
//! guest, as plain-HTTP proxying and TLS interception both do it: hop-by-hop
//! headers removed, bodies counted, the request body searched for secrets'
//! placeholders, the audit line written when the answer's body is through.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Request, Response};

use super::active::Registered;
use super::body::{Metered, ProxyBody, Record, Scanned, boxed};
use super::context::Context;
use super::guest_io::Counters;
use super::secrets::{Misuse, Secrets};
use crate::audit::Egress;

/// Why a request could not be sent on.
pub enum SendError {
    /// Its body held a secret's placeholder: refused before that part went out.
    Placeholder(Misuse),
    /// The server did not answer.
    Server(hyper::Error),
}

/// Sends `parts` with `body` (the guest's, searched for `secrets`'
/// placeholders and counted into `counters`) on `sender` once it is ready.
pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<ProxyBody>,
    parts: hyper::http::request::Parts,
    body: Incoming,
    secrets: Arc<Secrets>,
    counters: &Counters,
) -> Result<Response<Incoming>, SendError> {
    let found = Arc::new(Mutex::new(None));
    let body = boxed(Scanned::new(Metered::new(body, counters.up.clone()), secrets, found.clone()));
    let sent = async {
        sender.ready().await?;
        sender.send_request(Request::from_parts(parts, body)).await
    };
    let result = sent.await;
    if let Some(name) = found.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
        return Err(SendError::Placeholder(Misuse::InBody { name }));
    }
    result.map_err(SendError::Server)
}

/// The server's answer, passed to the guest with its body counted and the
/// request's audit line written once the body is through (or cut: the
/// request stays `registered` among the open connections until then).
pub fn relay_response(
    ctx: &Context,
    response: Response<Incoming>,
    mut event: Egress,
    counters: Counters,
    start: Instant,
    registered: Registered,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    event.status = Some(parts.status.as_u16());
    let token = registered.token();
    let record = Record { log: ctx.audit.clone(), event, counters: counters.clone(), start, registered: Some(registered) };
    let body = boxed(Metered::new(body, counters.down).with_record(record).cut_by(token));
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
