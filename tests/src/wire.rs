//! Hand-made gRPC messages for hostile-input tests: request bodies sent as
//! raw bytes (undecodable protobuf, invalid UTF-8, oversized messages), so a
//! test can send what no generated client would, to a real agent.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A codec that sends requests as the raw bytes given and decodes responses
/// as `R`.
pub struct RawCodec<R>(PhantomData<R>);

impl<R> Default for RawCodec<R> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

/// The encoder half of [`RawCodec`]: writes the bytes as they are.
pub struct RawEncoder;

/// The decoder half of [`RawCodec`]: a plain prost decode.
pub struct MessageDecoder<R>(PhantomData<R>);

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<R: prost::Message + Default> Decoder for MessageDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        let len = src.remaining();
        R::decode(src.copy_to_bytes(len)).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

impl<R: prost::Message + Default + Send + 'static> Codec for RawCodec<R> {
    type Encode = Vec<u8>;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = MessageDecoder<R>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> MessageDecoder<R> {
        MessageDecoder(PhantomData)
    }
}

/// Sends `messages` (raw protobuf bodies) on one bidirectional call to
/// `path` over the agent's Unix socket `socket`, then half-closes, and
/// collects the responses and how the call ended (`Ok` only for a clean end
/// with status OK).
pub async fn bidi<R: prost::Message + Default + Send + 'static>(
    socket: &std::path::Path,
    path: &'static str,
    messages: Vec<Vec<u8>>,
) -> (Vec<R>, Result<(), Status>) {
    let channel = crate::raw::channel(socket).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return (Vec::new(), Err(Status::unavailable(e.to_string())));
    }
    let request = tonic::Request::new(tokio_stream::iter(messages));
    let path = http_path(path);
    let mut stream = match grpc.streaming(request, path, RawCodec::<R>::default()).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut out = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return (out, Ok(())),
            Err(status) => return (out, Err(status)),
        }
    }
}

fn http_path(path: &'static str) -> tonic::codegen::http::uri::PathAndQuery {
    tonic::codegen::http::uri::PathAndQuery::from_static(path)
}

/// A protobuf field tag.
fn tag(field: u32, wire_type: u32) -> Vec<u8> {
    varint(u64::from((field << 3) | wire_type))
}

/// A protobuf varint.
pub fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A length-delimited protobuf field holding `bytes` as they are (which
/// need not be valid UTF-8 even where the schema says `string`).
pub fn bytes_field(field: u32, bytes: &[u8]) -> Vec<u8> {
    [tag(field, 2), varint(bytes.len() as u64), bytes.to_vec()].concat()
}
