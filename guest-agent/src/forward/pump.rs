//! Copying bytes between the guest connection and the Forward stream, one
//! function per direction, each ending with a half-close.
//!
//! The stream's sending side ([`Responses`], [`response`]) is defined here,
//! below the rest of `forward`, which re-exports it: this file names nothing
//! of its parent.

use std::io;

use hutch_proto::MAX_CHUNK;
use hutch_proto::v1::CloseWrite;
use hutch_proto::v1::forward_request::Kind as RequestKind;
use hutch_proto::v1::forward_response::Kind;
use hutch_proto::v1::{ForwardRequest, ForwardResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// The sending side of a Forward response stream.
pub type Responses = mpsc::Sender<Result<ForwardResponse, Status>>;

/// Wraps one response kind.
pub fn response(kind: Kind) -> ForwardResponse {
    ForwardResponse { kind: Some(kind) }
}

/// Why a direction stopped before its half-close.
#[derive(Debug)]
pub enum End {
    /// The client cancelled, disconnected, or ended its requests without
    /// `close_write`.
    ClientGone,
    /// Reading from or writing to the guest connection failed (e.g. reset).
    Guest(io::Error),
    /// The client broke the protocol.
    Protocol(String),
    /// A request could not be decoded (the status says why).
    Request(tonic::Status),
}

/// Guest → client: sends what the guest server writes, then `close_write`
/// once it shuts down its side. Each chunk waits for room in the bounded
/// response queue before the next read.
pub async fn guest_to_client(mut reader: OwnedReadHalf, responses: &Responses) -> Result<(), End> {
    loop {
        let mut buf = vec![0u8; MAX_CHUNK];
        let n = reader.read(&mut buf).await.map_err(End::Guest)?;
        if n == 0 {
            return responses.send(Ok(response(Kind::CloseWrite(CloseWrite {})))).await.map_err(|_| End::ClientGone);
        }
        buf.truncate(n);
        responses.send(Ok(response(Kind::Data(buf.into())))).await.map_err(|_| End::ClientGone)?;
    }
}

/// Client → guest: writes each `data` chunk to the guest connection (the next
/// is read only once it is written), and shuts down the write side on
/// `close_write`.
pub async fn client_to_guest(mut inbound: Streaming<ForwardRequest>, mut writer: OwnedWriteHalf) -> Result<(), End> {
    loop {
        match inbound.message().await {
            Ok(Some(ForwardRequest { kind: Some(RequestKind::Data(bytes)) })) => writer.write_all(&bytes).await.map_err(End::Guest)?,
            Ok(Some(ForwardRequest { kind: Some(RequestKind::CloseWrite(_)) })) => {
                return writer.shutdown().await.map_err(End::Guest);
            }
            Ok(Some(ForwardRequest { kind: Some(RequestKind::Start(_) | RequestKind::Accept(_)) })) => {
                return Err(End::Protocol("`start` and `accept` may only be the first message of a stream".into()));
            }
            // A kind from a newer client: nothing to do with it.
            Ok(Some(ForwardRequest { kind: None })) => {}
            Ok(None) => return Err(End::ClientGone),
            Err(status) => return Err(End::Request(crate::untrusted::request_error(&status))),
        }
    }
}
