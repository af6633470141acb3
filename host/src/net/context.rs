//! What every guest connection of one VM is served with, and how hutch
//! answers a guest program itself (a refusal that says what to do).
//!
//! A module below the proxy, the interception and the routes, so none of
//! them needs another to reach the policy, the secrets or the audit log.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::active::Active;
use super::ask::Asks;
use super::body::{ProxyBody, full};
use super::ca::Authority;
use super::policy::Policy;
use super::secrets::Secrets;
use super::served::Served;
use super::upstream::Upstream;
use crate::audit::{self, Egress, Log, What};
use crate::untrusted::text;

/// What every connection of one VM is served with.
pub struct Context {
    /// The VM's `net/` folder.
    pub net_dir: PathBuf,
    /// The egress policy in force, and its changes.
    pub served: Served,
    /// The VM's secrets (replaced when `hutch up` brings new values or scopes).
    pub secrets: RwLock<Arc<Secrets>>,
    /// How to reach the host side.
    pub upstream: Upstream,
    /// The VM's CA, when it has secrets to intercept for.
    pub authority: Option<Authority>,
    /// TLS towards real servers, verified against the host's store.
    pub client_tls: Arc<rustls::ClientConfig>,
    /// The VM's audit log.
    pub audit: Log,
    /// `mode = "ask"`'s open questions.
    pub asks: Asks,
    /// The open connections, to cut those a policy change refuses.
    pub active: Active,
}

impl Context {
    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.served.policy()
    }

    /// The secrets in force now.
    pub fn secrets(&self) -> Arc<Secrets> {
        self.secrets.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Serves `secrets` from now on.
    pub fn set_secrets(&self, secrets: Secrets) {
        *self.secrets.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(secrets);
    }

    /// Writes a finished egress event.
    pub fn log(&self, event: Egress) {
        self.log_event(What::Egress(event));
    }

    /// Writes an event of the network process into the audit log.
    pub fn log_event(&self, what: What) {
        self.audit.append(what);
    }

    /// Logs `event` as refused for `reason`, and answers the guest `status`
    /// with the reason and what to do about it: a 403 of a request no rule
    /// allows (`event.rule` unset) says which line to add.
    pub fn refuse(&self, mut event: Egress, status: StatusCode, reason: String, start: Instant) -> Response<ProxyBody> {
        let (short, advice) = if status == StatusCode::FORBIDDEN && event.rule.is_none() {
            let policy = self.policy();
            (policy.short_advice(&event.host, event.port, &reason), policy.advice(&event.host, event.port, &reason))
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
