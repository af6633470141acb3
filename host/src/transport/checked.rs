//! Calls whose answers are counted on the wire before they are decoded
//! (see `crate::untrusted::wire`): `Info`, `ListSessions`, `WaitSession`,
//! `SignalSession`, `Prepare`, `Sync` and `EgressListen`, the answers with
//! repeated fields. The generated client decodes with a plain prost codec;
//! these go through the same connection with [`Checked`], which refuses a
//! message whose items exceed the cap before prost allocates them.

use std::marker::PhantomData;

use hutch_proto::v1::{
    EgressListenRequest, EgressListenResponse, InfoRequest, InfoResponse, ListSessionsRequest, ListSessionsResponse, PrepareRequest,
    PrepareResponse, SignalSessionRequest, SignalSessionResponse, SyncRequest, SyncResponse, WaitSessionRequest, WaitSessionResponse,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, Streaming};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::call::REFUSED;
use super::{CallError, Client};
use crate::untrusted::wire::{self, Shape};

/// prost's codec, with the decoder counting items first.
struct Checked<Req, Resp> {
    shapes: &'static [Shape],
    _types: PhantomData<fn(Req) -> Resp>,
}

/// [`Checked`]'s decoder.
struct CheckedDecoder<Resp> {
    shapes: &'static [Shape],
    _types: PhantomData<fn() -> Resp>,
}

impl<Req, Resp> Codec for Checked<Req, Resp>
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    type Encode = Req;
    type Decode = Resp;
    type Encoder = <ProstCodec<Req, Resp> as Codec>::Encoder;
    type Decoder = CheckedDecoder<Resp>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<Req, Resp>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder { shapes: self.shapes, _types: PhantomData }
    }
}

impl<Resp: prost::Message + Default + Send + 'static> Decoder for CheckedDecoder<Resp> {
    type Item = Resp;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Resp>, Status> {
        wire::check(bytes::Buf::chunk(src), self.shapes).map_err(|e| Status::internal(format!("{REFUSED}{e}")))?;
        Resp::decode(src).map(Some).map_err(|e| Status::internal(format!("{REFUSED}undecodable: {e}")))
    }
}

fn codec<Req, Resp>(shapes: &'static [Shape]) -> Checked<Req, Resp> {
    Checked { shapes, _types: PhantomData }
}

impl Client {
    async fn ready(&self) -> Result<tonic::client::Grpc<super::Channel>, Status> {
        let mut grpc = tonic::client::Grpc::with_origin(self.channel.clone(), tonic::transport::Uri::from_static("http://agent"));
        grpc.ready().await.map_err(|e| Status::unavailable(format!("the connection to the agent failed: {e}")))?;
        Ok(grpc)
    }

    async fn unary<Req, Resp>(&self, method: &'static str, request: Req, shapes: &'static [Shape]) -> Result<Response<Resp>, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut grpc = self.ready().await?;
        grpc.unary(Request::new(request), PathAndQuery::from_static(method), codec::<Req, Resp>(shapes)).await
    }

    /// `Info`, within the call deadline, its capabilities counted first:
    /// what every command that asks the agent about itself uses.
    pub async fn describe(&self) -> Result<InfoResponse, CallError> {
        let deadline = self.deadline();
        deadline.within("Info", self.info_checked()).await?.map_err(CallError::from_status)
    }

    /// `Info`, its capabilities counted first.
    pub async fn info_checked(&self) -> Result<InfoResponse, Status> {
        Ok(self.unary("/hutch.v1.Agent/Info", InfoRequest {}, wire::INFO).await?.into_inner())
    }

    /// `ListSessions`, its sessions and their arguments counted first.
    pub async fn list_sessions_checked(&self) -> Result<ListSessionsResponse, Status> {
        Ok(self.unary("/hutch.v1.Agent/ListSessions", ListSessionsRequest {}, wire::LIST_SESSIONS).await?.into_inner())
    }

    /// `WaitSession`, the session's arguments counted first.
    pub async fn wait_session_checked(&self, request: WaitSessionRequest) -> Result<WaitSessionResponse, Status> {
        Ok(self.unary("/hutch.v1.Agent/WaitSession", request, wire::ONE_SESSION).await?.into_inner())
    }

    /// `SignalSession`, the session's arguments counted first.
    pub async fn signal_session_checked(&self, request: SignalSessionRequest) -> Result<SignalSessionResponse, Status> {
        Ok(self.unary("/hutch.v1.Agent/SignalSession", request, wire::ONE_SESSION).await?.into_inner())
    }

    /// `Prepare`, its heavy dirs counted first.
    pub async fn prepare_checked(&self, request: PrepareRequest) -> Result<PrepareResponse, Status> {
        Ok(self.unary("/hutch.v1.Agent/Prepare", request, wire::PREPARE).await?.into_inner())
    }

    /// `Sync`, each manifest chunk's entries counted first.
    pub async fn sync_checked(
        &self,
        requests: impl tokio_stream::Stream<Item = SyncRequest> + Send + 'static,
    ) -> Result<Streaming<SyncResponse>, Status> {
        let mut grpc = self.ready().await?;
        let codec = codec::<SyncRequest, SyncResponse>(wire::SYNC);
        Ok(grpc.streaming(Request::new(requests), PathAndQuery::from_static("/hutch.v1.Agent/Sync"), codec).await?.into_inner())
    }

    /// `EgressListen`, the lists of its answer counted first.
    pub async fn egress_listen_checked(&self, request: EgressListenRequest) -> Result<Streaming<EgressListenResponse>, Status> {
        let mut grpc = self.ready().await?;
        let codec = codec::<EgressListenRequest, EgressListenResponse>(wire::EGRESS_LISTEN);
        let path = PathAndQuery::from_static("/hutch.v1.Agent/EgressListen");
        Ok(grpc.server_streaming(Request::new(request), path, codec).await?.into_inner())
    }
}
