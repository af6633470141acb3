//! Serving a connection that came in on a `tcp://` rule's address in the
//! guest ([`super::route`] says how those addresses are given): decided
//! again by the policy in force, resolved and connected on the host,
//! relayed and audited as `TCP`.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use super::context::Context;
use super::policy::Verdict;
use super::route::Route;
use crate::audit::{self, Egress};

/// Serves one guest connection that came in on `route`'s listener: decided
/// again by the policy in force, opened on the host, relayed, audited.
pub async fn serve<G>(ctx: Arc<Context>, mut guest: G, route: Route)
where
    G: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let mut event = Egress { host: route.host.clone(), port: route.port, method: "TCP".into(), ..Egress::default() };
    let explicit = match ctx.policy().decide(&route.host, route.port) {
        Verdict::Allow { rule, explicit } => {
            event.rule = Some(rule);
            explicit
        }
        Verdict::Deny { reason } => return refuse(&ctx, event, reason, start),
        Verdict::Ask => return refuse(&ctx, event, format!("{} is no longer allowed", route.rule), start),
    };
    let connected = match ctx.upstream.connect(&route.host, route.port, explicit).await {
        Ok(connected) => connected,
        Err(refusal) => return refuse(&ctx, event, refusal.reason(&route.host), start),
    };
    event.addr = Some(connected.addr.clone());
    event.decision = "allow".into();
    let mut server = connected.stream;
    let cut = ctx.active.register(&route.host, route.port);
    tokio::select! {
        copied = super::relay::copy(&mut guest, &mut server) => match copied {
            Ok((up, down)) => (event.bytes_up, event.bytes_down) = (up, down),
            Err(e) => tracing::debug!("route to {}:{} ended: {e}", route.host, route.port),
        },
        reason = cut.cancelled() => {
            event.reason = Some(reason);
        }
    }
    event.duration_ms = audit::millis(start.elapsed());
    ctx.log(event);
}

fn refuse(ctx: &Context, mut event: Egress, reason: String, start: Instant) {
    tracing::info!("TCP {}:{}: {reason}", event.host, event.port);
    event.decision = "deny".into();
    event.reason = Some(reason);
    event.duration_ms = audit::millis(start.elapsed());
    ctx.log(event);
}
