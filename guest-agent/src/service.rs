//! The `hutch.v1.Agent` gRPC service: thin glue from calls to the modules that
//! do the work.

use std::pin::Pin;
use std::time::Instant;

use hutch_proto::v1::agent_server::Agent;
use std::sync::Arc;

use hutch_proto::v1::{
    ExecRequest, ExecResponse, InfoRequest, InfoResponse, SnapshotDiffRequest, SnapshotDiffResponse, SyncRequest, SyncResponse,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::exec::output::RESPONSE_QUEUE;
use crate::exec::registry::Groups;
use crate::exec::session;
use crate::info;
use crate::sync;

/// State shared by every call to one agent.
#[derive(Clone)]
pub struct AgentService {
    started: Instant,
    groups: Groups,
    sync: Arc<sync::Config>,
}

impl AgentService {
    /// A service whose execs register their process groups in `groups` and
    /// whose snapshots follow `sync`.
    pub fn new(groups: Groups, sync: sync::Config) -> Self {
        Self { started: Instant::now(), groups, sync: Arc::new(sync) }
    }
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecResponse, Status>> + Send>>;
type SyncStream = Pin<Box<dyn Stream<Item = Result<SyncResponse, Status>> + Send>>;
type DiffStream = Pin<Box<dyn Stream<Item = Result<SnapshotDiffResponse, Status>> + Send>>;

/// Messages buffered on a Sync or SnapshotDiff response stream.
const SYNC_QUEUE: usize = 8;

#[tonic::async_trait]
impl Agent for AgentService {
    type ExecStream = ExecStream;
    type SyncStream = SyncStream;
    type SnapshotDiffStream = DiffStream;

    async fn exec(&self, request: Request<Streaming<ExecRequest>>) -> Result<Response<Self::ExecStream>, Status> {
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        tokio::spawn(session::run(request.into_inner(), tx, self.groups.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(info::describe(self.started)))
    }

    async fn sync(&self, request: Request<Streaming<SyncRequest>>) -> Result<Response<Self::SyncStream>, Status> {
        let (tx, rx) = mpsc::channel(SYNC_QUEUE);
        tokio::spawn(sync::session::run(self.sync.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn snapshot_diff(&self, request: Request<SnapshotDiffRequest>) -> Result<Response<Self::SnapshotDiffStream>, Status> {
        let (tx, rx) = mpsc::channel(SYNC_QUEUE);
        tokio::spawn(sync::diff::run(self.sync.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
