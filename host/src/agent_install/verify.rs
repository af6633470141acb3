//! Proof that the installed agent answers on its transport: a gRPC `Info`
//! call to its Unix socket on the guest, carried by the SSH connection
//! (`direct-streamlocal`), retried until the agent has bound its socket.

use std::time::{Duration, Instant};

use hutch_proto::v1::agent_client::AgentClient;
use hutch_proto::v1::{InfoRequest, InfoResponse};
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use tower::service_fn;

use super::ssh::SocketOpener;

/// How long a freshly started agent may take to answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Pause between attempts while it starts.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// Time allowed for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls `Info` through `opener` until it answers or `within` has passed;
/// the error is the last attempt's.
pub async fn info_over_ssh(opener: &SocketOpener, within: Duration) -> Result<InfoResponse, String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(opener)).await {
            Ok(Ok(info)) => return Ok(info),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
        };
        tracing::trace!("agent not answering yet: {last}");
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

async fn attempt(opener: &SocketOpener) -> Result<InfoResponse, String> {
    let opener = opener.clone();
    let connector = service_fn(move |_: Uri| {
        let opener = opener.clone();
        async move { opener.open().await.map(TokioIo::new) }
    });
    let channel = Endpoint::from_static("http://agent").connect_with_connector(connector).await.map_err(|e| describe(&e))?;
    let info = AgentClient::new(channel).info(InfoRequest {}).await.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    Ok(info.into_inner())
}

/// The innermost cause: tonic's own message ("transport error") says little.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
