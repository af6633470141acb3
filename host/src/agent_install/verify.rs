//! Proof that the installed agent answers on its transport: a gRPC `Info`
//! call to its Unix socket on the guest, carried by the SSH connection
//! (`direct-streamlocal`), retried until the agent has bound its socket.

use std::time::Duration;

use hutch_proto::v1::agent_client::AgentClient;
use hutch_proto::v1::{InfoRequest, InfoResponse};
use tonic::transport::Uri;

use super::ssh::SocketOpener;
use crate::daemon::retry_until_async;
use crate::transport::Connection;

/// How long a freshly started agent may take to answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Pause between attempts while it starts.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// Time allowed for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls `Info` through `opener` until it answers or `within` has passed;
/// the error is the last attempt's.
pub async fn info_over_ssh(opener: &SocketOpener, within: Duration) -> Result<InfoResponse, String> {
    retry_until_async(within, RETRY_EVERY, || async {
        let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(opener))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")));
        if let Err(e) = &answer {
            tracing::trace!("agent not answering yet: {e}");
        }
        answer
    })
    .await
}

async fn attempt(opener: &SocketOpener) -> Result<InfoResponse, String> {
    let stream = opener.open().await.map_err(|e| describe(&e))?;
    let connection = Connection::handshake(Box::new(stream)).await.map_err(|e| describe(&e))?;
    let mut client = AgentClient::with_origin(connection, Uri::from_static("http://agent"));
    let after = crate::untrusted::deadline::current().call;
    let info = tokio::time::timeout(after, client.info(InfoRequest {}))
        .await
        .map_err(|_| format!("no answer within {} s", after.as_secs_f64()))?
        .map_err(|s| format!("{}: {}", s.code(), crate::untrusted::text::shown(s.message())))?;
    Ok(info.into_inner())
}

/// The innermost cause: the outer messages ("connection error") say little.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
