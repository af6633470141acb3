//! A raw gRPC client for protocol-level tests: sends exactly the requests a
//! test gives, in order, to a real agent over its Unix socket.

use hutch_proto::v1::agent_client::AgentClient;
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecRequest, ExecResponse, PrepareRequest, PrepareResponse};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects to the agent listening on the Unix socket `socket`.
pub async fn connect(socket: &std::path::Path) -> AgentClient<Channel> {
    AgentClient::new(channel(socket).await)
}

/// One HTTP/2 connection to the agent listening on the Unix socket `socket`.
pub async fn channel(socket: &std::path::Path) -> Channel {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://agent")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect to agent")
}

/// Runs `future` to completion on a fresh single-threaded runtime.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// Calls `Prepare` once.
pub fn prepare(socket: &std::path::Path, request: PrepareRequest) -> Result<PrepareResponse, tonic::Status> {
    block_on(async { connect(socket).await.prepare(request).await.map(tonic::Response::into_inner) })
}

/// Sends `requests` on one Exec stream (then half-closes) and collects every
/// response until the agent ends the stream.
pub fn exec(socket: &std::path::Path, requests: Vec<ExecRequest>) -> Vec<ExecResponse> {
    block_on(async {
        let mut client = connect(socket).await;
        let mut stream = client.exec(tokio_stream::iter(requests)).await.expect("exec call").into_inner();
        let mut responses = Vec::new();
        while let Some(message) = stream.message().await.expect("exec stream") {
            responses.push(message);
        }
        responses
    })
}

/// All stdout bytes among `responses`.
pub fn stdout_of(responses: &[ExecResponse]) -> Vec<u8> {
    responses
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::Stdout(data)) => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}
