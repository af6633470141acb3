//! One forwarded connection: a TCP connection accepted on the host, carried
//! over one `Forward` gRPC stream to a guest port.
//!
//! Each direction ends with a half-close that is passed on (client EOF →
//! `close_write` → the guest server reads EOF, and back), so request/response
//! protocols that rely on shutdown(WR) work. When the guest connection fails,
//! or the agent refuses, the client's connection is closed at once; when the
//! client's connection fails, the call is cancelled, and the agent closes the
//! guest's.

use hutch_proto::MAX_CHUNK;
use hutch_proto::v1::forward_request::Kind as RequestKind;
use hutch_proto::v1::forward_response::Kind;
use hutch_proto::v1::{CloseWrite, ForwardError, ForwardFailed, ForwardRequest, ForwardResponse, ForwardStart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::PortMapping;
use crate::transport::Client;
use crate::untrusted::text;

/// Chunks from the client that may wait before hutch stops reading its
/// socket (HTTP/2 flow control then holds the rest in the client's kernel).
const REQUEST_QUEUE: usize = 8;

/// Why a tunnel ended early.
enum Broken {
    /// The client's connection failed (reset) or the request stream is gone.
    Client,
    /// The agent ended the stream with an error (the guest connection failed).
    Agent(Status),
    /// The agent ended the stream before `close_write`.
    Truncated,
}

/// Serves one accepted connection until both directions are closed or either
/// side fails. Problems are reported on stderr, one line each.
pub async fn run(mut client: Client, socket: TcpStream, mapping: PortMapping) {
    let _ = socket.set_nodelay(true);
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let start = ForwardStart { guest_port: u32::from(mapping.guest), guest_host: String::new() };
    // The channel is new and has room: this cannot fail or wait.
    let _ = tx.try_send(request(RequestKind::Start(start)));
    // Connecting in the guest is short: the agent has the call deadline to
    // say whether it did (the connection's own life is never cut).
    let deadline = client.deadline();
    let connected = deadline
        .within("Forward", async {
            let mut inbound = client.forward(ReceiverStream::new(rx)).await?.into_inner();
            let first = inbound.message().await?;
            Ok::<_, Status>((inbound, first))
        })
        .await;
    let inbound = match connected {
        Err(expired) => return eprintln!("hutch: {}: {expired}", route(mapping)),
        Ok(Err(status)) => return report_status(mapping, &status),
        Ok(Ok((inbound, first))) => match first {
            Some(ForwardResponse { kind: Some(Kind::Connected(_)) }) => inbound,
            Some(ForwardResponse { kind: Some(Kind::Failed(failed)) }) => return report_failure(mapping, &failed),
            _ => return eprintln!("hutch: {}: the agent ended the forward without connecting", route(mapping)),
        },
    };
    let (reader, writer) = socket.into_split();
    // The first error drops the other direction; the socket halves and the
    // call go with it, which closes the client's connection and the guest's.
    if let Err(broken) = tokio::try_join!(client_to_agent(reader, &tx), agent_to_client(inbound, writer)) {
        match broken {
            Broken::Client => tracing::debug!("{}: the client's connection ended abruptly", route(mapping)),
            Broken::Agent(status) => report_status(mapping, &status),
            Broken::Truncated => eprintln!("hutch: {}: the agent ended the connection without closing it", route(mapping)),
        }
    }
}

/// Client → agent: chunks of what the client sends, then `close_write` at its EOF.
async fn client_to_agent(mut reader: OwnedReadHalf, tx: &mpsc::Sender<ForwardRequest>) -> Result<(), Broken> {
    loop {
        let mut buf = vec![0u8; MAX_CHUNK];
        let n = reader.read(&mut buf).await.map_err(|_| Broken::Client)?;
        if n == 0 {
            return tx.send(request(RequestKind::CloseWrite(CloseWrite {}))).await.map_err(|_| Broken::Client);
        }
        buf.truncate(n);
        tx.send(request(RequestKind::Data(buf.into()))).await.map_err(|_| Broken::Client)?;
    }
}

/// Agent → client: writes each chunk (the next is read only once it is
/// written), half-closes at `close_write`, and reads on to the stream's end to
/// learn whether the guest connection ended cleanly.
async fn agent_to_client(mut inbound: Streaming<ForwardResponse>, mut writer: OwnedWriteHalf) -> Result<(), Broken> {
    let mut closed = false;
    loop {
        match inbound.message().await {
            Ok(Some(ForwardResponse { kind: Some(Kind::Data(bytes)) })) => writer.write_all(&bytes).await.map_err(|_| Broken::Client)?,
            Ok(Some(ForwardResponse { kind: Some(Kind::CloseWrite(_)) })) => {
                closed = true;
                writer.shutdown().await.map_err(|_| Broken::Client)?;
            }
            Ok(Some(_)) => {}
            Ok(None) if closed => return Ok(()),
            Ok(None) => return Err(Broken::Truncated),
            Err(status) => return Err(Broken::Agent(status)),
        }
    }
}

fn report_failure(mapping: PortMapping, failed: &ForwardFailed) {
    let guest = mapping.guest;
    match ForwardError::try_from(failed.error) {
        Ok(ForwardError::ForwardRefused) => eprintln!(
            "hutch: {}: connection refused: nothing listens on guest port {guest}; is the server running in the guest yet?",
            route(mapping)
        ),
        _ => eprintln!("hutch: {}: the agent could not connect to guest port {guest}: {}", route(mapping), text::shown(&failed.message)),
    }
}

fn report_status(mapping: PortMapping, status: &Status) {
    let why = match status.code() {
        tonic::Code::Unimplemented => "the agent does not support port forwarding (update the guest image)".to_owned(),
        tonic::Code::Aborted => text::shown(status.message()),
        code => format!("the connection to the agent failed ({code}: {})", text::shown(status.message())),
    };
    eprintln!("hutch: {}: {why}", route(mapping));
}

fn route(mapping: PortMapping) -> String {
    format!("127.0.0.1:{} → guest :{}", mapping.host, mapping.guest)
}

fn request(kind: RequestKind) -> ForwardRequest {
    ForwardRequest { kind: Some(kind) }
}
