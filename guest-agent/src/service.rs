//! The `hutch.v1.Agent` gRPC service: thin glue from calls to the modules that
//! do the work.

use std::pin::Pin;
use std::time::Instant;

use hutch_proto::v1::agent_server::Agent;
use std::sync::Arc;

use hutch_proto::v1::{
    AttachRequest, ExecRequest, ExecResponse, InfoRequest, InfoResponse, ListSessionsRequest, ListSessionsResponse, PrepareRequest,
    PrepareResponse, SignalSessionRequest, SignalSessionResponse, SnapshotDiffRequest, SnapshotDiffResponse, SyncRequest, SyncResponse,
    WaitSessionRequest, WaitSessionResponse, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::egress::{self, Egress};
use crate::exec::output::RESPONSE_QUEUE;
use crate::exec::registry::Groups;
use crate::exec::session_store::Sessions;
use crate::exec::{attach, stream};
use crate::forward;
use crate::info;
use crate::prepare::{self, PrepareError};
use crate::sync;

/// State shared by every call to one agent.
#[derive(Clone)]
pub struct AgentService {
    started: Instant,
    groups: Groups,
    sessions: Sessions,
    prepare: prepare::Config,
    sync: Arc<sync::Config>,
    egress: Egress,
}

impl AgentService {
    /// A service whose execs register their process groups in `groups` and
    /// keep sessions in `sessions`, that keeps heavy dirs as `prepare` says,
    /// snapshots as `sync` says, and writes the egress proxy's guest
    /// configuration as `egress` says.
    pub fn new(groups: Groups, sessions: Sessions, prepare: prepare::Config, sync: sync::Config, egress: egress::listener::Config) -> Self {
        Self { started: Instant::now(), groups, sessions, prepare, sync: Arc::new(sync), egress: Egress::new(egress) }
    }
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecResponse, Status>> + Send>>;
type SyncStream = Pin<Box<dyn Stream<Item = Result<SyncResponse, Status>> + Send>>;
type DiffStream = Pin<Box<dyn Stream<Item = Result<SnapshotDiffResponse, Status>> + Send>>;
type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Messages buffered on a Sync or SnapshotDiff response stream.
const SYNC_QUEUE: usize = 8;

#[tonic::async_trait]
impl Agent for AgentService {
    type ExecStream = ExecStream;
    type SyncStream = SyncStream;
    type SnapshotDiffStream = DiffStream;
    type WatchStream = WatchStream;

    async fn exec(&self, request: Request<Streaming<ExecRequest>>) -> Result<Response<Self::ExecStream>, Status> {
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        tokio::spawn(stream::run(request.into_inner(), tx, self.groups.clone(), self.sessions.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type AttachStream = ExecStream;

    async fn attach(&self, request: Request<Streaming<AttachRequest>>) -> Result<Response<Self::AttachStream>, Status> {
        let responses = attach::call(|start| self.sessions.attach(start), request.into_inner()).await?;
        Ok(Response::new(Box::pin(responses)))
    }

    async fn list_sessions(&self, _request: Request<ListSessionsRequest>) -> Result<Response<ListSessionsResponse>, Status> {
        let (sessions, agent_started_unix_ms) = self.sessions.list();
        let now_unix_ms = crate::exec::kept::unix_ms(std::time::SystemTime::now());
        Ok(Response::new(ListSessionsResponse { sessions, agent_started_unix_ms, now_unix_ms }))
    }

    async fn wait_session(&self, request: Request<WaitSessionRequest>) -> Result<Response<WaitSessionResponse>, Status> {
        let session = self.sessions.wait(&request.into_inner().name).await?;
        Ok(Response::new(WaitSessionResponse { session: Some(session) }))
    }

    async fn signal_session(&self, request: Request<SignalSessionRequest>) -> Result<Response<SignalSessionResponse>, Status> {
        let request = request.into_inner();
        let session = self.sessions.signal(&request.name, &request.signal)?;
        Ok(Response::new(SignalSessionResponse { session: Some(session) }))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(info::describe(self.started)))
    }

    type ForwardStream = forward::ResponseStream;

    async fn forward(&self, request: Request<Streaming<hutch_proto::v1::ForwardRequest>>) -> Result<Response<Self::ForwardStream>, Status> {
        let (tx, rx) = mpsc::channel(forward::RESPONSE_QUEUE);
        tokio::spawn(forward::run(request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type EgressListenStream = egress::listener::ListenStream;

    async fn egress_listen(
        &self,
        request: Request<hutch_proto::v1::EgressListenRequest>,
    ) -> Result<Response<Self::EgressListenStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(self.egress.clone().listen(request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type EgressAcceptStream = forward::ResponseStream;

    async fn egress_accept(
        &self,
        request: Request<Streaming<hutch_proto::v1::ForwardRequest>>,
    ) -> Result<Response<Self::EgressAcceptStream>, Status> {
        let (tx, rx) = mpsc::channel(forward::RESPONSE_QUEUE);
        tokio::spawn(self.egress.clone().accept(request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn prepare(&self, request: Request<PrepareRequest>) -> Result<Response<PrepareResponse>, Status> {
        let request = request.into_inner();
        let config = self.prepare.clone();
        let done = tokio::task::spawn_blocking(move || prepare::prepare(&request, &config, &prepare::mounts::System))
            .await
            .map_err(|e| Status::internal(format!("prepare panicked: {e}")))?;
        match done {
            Ok(response) => Ok(Response::new(response)),
            Err(e @ (PrepareError::BadPath(_) | PrepareError::NoShare | PrepareError::BadRequest(_))) => {
                Err(Status::invalid_argument(e.to_string()))
            }
            Err(e @ PrepareError::Unsupported(_)) => Err(Status::unimplemented(e.to_string())),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn sync(&self, request: Request<Streaming<SyncRequest>>) -> Result<Response<Self::SyncStream>, Status> {
        let (tx, rx) = mpsc::channel(SYNC_QUEUE);
        tokio::spawn(sync::session::run(self.sync.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn git_state(
        &self,
        _request: Request<hutch_proto::v1::GitStateRequest>,
    ) -> Result<Response<hutch_proto::v1::GitStateResponse>, Status> {
        let described = tokio::task::spawn_blocking(crate::git::state::describe)
            .await
            .map_err(|e| Status::internal(format!("describing the repositories panicked: {e}")))?;
        Ok(Response::new(described))
    }

    async fn snapshot_diff(&self, request: Request<SnapshotDiffRequest>) -> Result<Response<Self::SnapshotDiffStream>, Status> {
        let (tx, rx) = mpsc::channel(SYNC_QUEUE);
        tokio::spawn(sync::diff::run(self.sync.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(SYNC_QUEUE);
        sync::background::spawn("sync-watch", sync::watch::run(self.sync.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
