//! The `Forward` call: one TCP connection from the host (`hutch forward`)
//! tunnelled to a port in the guest, one gRPC stream per connection.
//!
//! - [`connect`] checks where the client asked to go (loopback only) and opens
//!   the guest connection, classifying failures so the host can explain them
//!   (nothing listening yet is the common one);
//! - [`pump`] copies bytes both ways and passes half-closes on; it also
//!   defines the response stream's sending side, [`Responses`].
//!
//! Backpressure: guest bytes go through a bounded queue of [`RESPONSE_QUEUE`]
//! chunks into HTTP/2's flow control, and client bytes are read from the
//! stream only once the previous chunk is written to the guest socket, so a
//! slow reader on either side slows the other instead of growing the agent.
//!
//! The guest connection is closed whenever the stream ends: normally once both
//! directions are half-closed, at once when the client cancels or disconnects
//! (hutch exited), and with status ABORTED when the guest connection fails.

pub mod connect;
pub mod pump;

use std::pin::Pin;

use hutch_proto::v1::forward_request::Kind as RequestKind;
use hutch_proto::v1::forward_response::Kind;
use hutch_proto::v1::{ForwardConnected, ForwardFailed, ForwardRequest, ForwardResponse};
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use self::connect::ConnectFailure;
use self::pump::End;
pub use self::pump::{Responses, response};

/// Chunks that may wait in the agent per connection before it stops reading
/// from the guest socket.
pub const RESPONSE_QUEUE: usize = 8;

/// The response stream type the service returns.
pub type ResponseStream = Pin<Box<dyn Stream<Item = Result<ForwardResponse, Status>> + Send>>;

/// Serves one Forward stream to its end. Every outcome is reported on
/// `responses` (or nothing, when the client is gone); the guest connection
/// never outlives the call.
pub async fn run(mut inbound: Streaming<ForwardRequest>, responses: Responses) {
    let start = match inbound.message().await {
        Ok(Some(ForwardRequest { kind: Some(RequestKind::Start(start)) })) => start,
        Ok(Some(_)) => return fail(&responses, ConnectFailure::Invalid("the first message of a forward must be `start`".into())).await,
        Ok(None) => return,
        Err(status) => {
            let _ = responses.send(Err(crate::untrusted::request_error(&status))).await;
            return;
        }
    };
    let addrs = match connect::candidates(&start) {
        Ok(addrs) => addrs,
        Err(failure) => return fail(&responses, failure).await,
    };
    let stream = tokio::select! {
        connected = connect::connect(&addrs) => match connected {
            Ok(stream) => stream,
            Err(failure) => return fail(&responses, failure).await,
        },
        () = responses.closed() => return,
    };
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::debug!(%peer, "forward connected");
    if responses.send(Ok(response(Kind::Connected(ForwardConnected { peer: peer.clone() })))).await.is_err() {
        return;
    }
    relay(stream, inbound, &responses, &peer).await;
}

/// Copies bytes both ways between an open guest connection and its stream
/// until both sides have half-closed or either fails, and reports how it
/// ended (`Forward` and `EgressAccept` streams end alike).
pub async fn relay(stream: tokio::net::TcpStream, inbound: Streaming<ForwardRequest>, responses: &Responses, peer: &str) {
    let (reader, writer) = stream.into_split();
    let both = async { tokio::try_join!(pump::guest_to_client(reader, responses), pump::client_to_guest(inbound, writer)) };
    let outcome = tokio::select! {
        outcome = both => outcome.map(|_| ()),
        () = responses.closed() => Err(End::ClientGone),
    };
    match outcome {
        Ok(()) => tracing::debug!(%peer, "connection finished"),
        Err(End::ClientGone) => tracing::debug!(%peer, "client gone: guest connection closed"),
        Err(End::Guest(e)) => {
            tracing::debug!(%peer, "guest connection failed: {e}");
            let _ = responses.send(Err(Status::aborted(format!("guest connection to {peer} failed: {e}")))).await;
        }
        Err(End::Protocol(why)) => {
            let _ = responses.send(Err(Status::invalid_argument(why))).await;
        }
        Err(End::Request(status)) => {
            let _ = responses.send(Err(status)).await;
        }
    }
}

async fn fail(responses: &Responses, failure: ConnectFailure) {
    tracing::debug!("forward failed: {failure}");
    let failed = ForwardFailed { error: failure.kind() as i32, message: failure.to_string() };
    let _ = responses.send(Ok(response(Kind::Failed(failed)))).await;
}
