//! One `Sync` call: start, manifest out, deletions and archive in, summary out.
//!
//! The call holds its root's lock ([`super::lock`]) from `start` to the end,
//! opens the root without following symlinks ([`super::root`]), walks it and
//! sends the manifest, then passes each `delete` list and `archive` chunk to
//! the blocking [`worker`] as it arrives. Any failure (a bad message, the
//! host leaving, the worker refusing an entry) stops the worker before the
//! status goes out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use hutch_proto::v1::sync_request::Kind as In;
use hutch_proto::v1::sync_response::Kind as Out;
use hutch_proto::v1::{ManifestEnd, ManifestEntry, PathManifest, SyncRequest, SyncResponse, WalkRules};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::receive::Applier;
use super::root::SnapshotRoot;
use super::validate::SafeRoot;
use super::worker::{Record, Work, Worker};
use super::{Config, SyncError};
use crate::limits;

/// Entries per manifest message (well under gRPC's 4 MiB message limit).
const MANIFEST_CHUNK: usize = 4096;

/// Serves one Sync call; errors end the call with their status.
pub async fn run(config: Arc<Config>, requests: Streaming<SyncRequest>, tx: mpsc::Sender<Result<SyncResponse, Status>>) {
    if let Err(e) = serve(config, requests, &tx).await {
        tracing::warn!("sync failed: {e}");
        let _ = tx.send(Err(e.status())).await;
    }
    // A Sync moves megabytes through the heap: give them back.
    crate::malloc::trim();
}

async fn serve(
    config: Arc<Config>,
    mut requests: Streaming<SyncRequest>,
    tx: &mpsc::Sender<Result<SyncResponse, Status>>,
) -> Result<(), SyncError> {
    let begin = Instant::now();
    let start = match next(&mut requests).await? {
        Some(In::Start(start)) => start,
        _ => return Err(SyncError::BadRequest("the first Sync message must be `start`".into())),
    };
    let rules = start.rules.unwrap_or_default();
    let _lock = config.locks.lock(&start.root).await;
    if start.push {
        return push(&config, start.root, rules, requests, tx, begin).await;
    }
    let open_config = config.clone();
    let root_name = start.root.clone();
    let root = blocking(move || SnapshotRoot::open(&open_config, &root_name, true)).await?;
    let fresh = root.fresh;
    let walk_rules = rules.clone();
    let (root, tree) = blocking(move || {
        let tree = hutch_proto::tree::walk(&root.walk_path(), &walk_rules)?;
        Ok((root, tree))
    })
    .await?;
    let count = tree.entries.len() as u64;
    for chunk in tree.entries.chunks(MANIFEST_CHUNK) {
        send(tx, Out::Manifest(PathManifest { entries: chunk.to_vec() })).await?;
    }
    send(tx, Out::ManifestEnd(ManifestEnd { entries: count, fresh })).await?;

    let expected: BTreeMap<Vec<u8>, ManifestEntry> = tree.entries.into_iter().map(|e| (e.path.clone(), e)).collect();
    let cancel = Arc::new(AtomicBool::new(false));
    let applier = Applier::new(SafeRoot::new(root.into_fd()), expected, cancel.clone());
    let record = Record { state_dir: config.state_dir.clone(), root: start.root, rules };
    let worker = Worker::start(applier, cancel, record, None);
    complete(worker, &mut requests, tx, begin).await
}

/// Feeds the worker the call's messages, then answers with its summary (or
/// stops it and fails the call).
async fn complete(
    mut worker: Worker,
    requests: &mut Streaming<SyncRequest>,
    tx: &mpsc::Sender<Result<SyncResponse, Status>>,
    begin: Instant,
) -> Result<(), SyncError> {
    if let Err(e) = feed(requests, &mut worker).await {
        worker.abort().await;
        return Err(e);
    }
    let mut summary = worker.finish().await?;
    summary.duration_ms = u64::try_from(begin.elapsed().as_millis()).unwrap_or(u64::MAX);
    send(tx, Out::Summary(summary)).await
}

/// A synced workspace's push (`SyncStart.push`), under the root's lock: no
/// manifest; the host's changes are applied where the copy is still what
/// both sides agreed on, and the rest is skipped (see [`Applier::for_push`]).
async fn push(
    config: &Arc<Config>,
    root: String,
    rules: WalkRules,
    mut requests: Streaming<SyncRequest>,
    tx: &mpsc::Sender<Result<SyncResponse, Status>>,
    begin: Instant,
) -> Result<(), SyncError> {
    let Some(agreed) = config.agreed.get(&root) else {
        return Err(SyncError::NoWatch(crate::untrusted::shown_str(&root)));
    };
    let open_config = config.clone();
    let root_name = root.clone();
    let opened = blocking(move || SnapshotRoot::open(&open_config, &root_name, false)).await?;
    send(tx, Out::ManifestEnd(ManifestEnd { entries: 0, fresh: false })).await?;
    let entries = std::mem::take(&mut super::agreed::lock(&agreed).entries);
    let cancel = Arc::new(AtomicBool::new(false));
    let applier = Applier::for_push(SafeRoot::new(opened.into_fd()), entries, cancel.clone());
    let record = Record { state_dir: config.state_dir.clone(), root, rules };
    let worker = Worker::start(applier, cancel, record, Some(agreed));
    complete(worker, &mut requests, tx, begin).await
}

/// Passes the call's messages to the worker until `finish`, or until the
/// worker stops (then its own error is the call's).
async fn feed(requests: &mut Streaming<SyncRequest>, worker: &mut Worker) -> Result<(), SyncError> {
    let mut archive_started = false;
    loop {
        let message = tokio::select! {
            message = next(requests) => message?,
            // The worker refused something: answer now, not at the next message.
            () = worker.stopped() => return Ok(()),
        };
        let work = match message {
            Some(In::Delete(list)) if !archive_started => {
                if list.paths.len() > limits::MAX_DELETE_PATHS {
                    return Err(SyncError::BadRequest(format!(
                        "a delete list of {} paths: the agent takes at most {} per message",
                        list.paths.len(),
                        limits::MAX_DELETE_PATHS
                    )));
                }
                Work::Delete(list.paths)
            }
            Some(In::Archive(chunk)) => {
                archive_started = true;
                Work::Archive(chunk)
            }
            Some(In::Finish(finish)) => {
                worker.send(Work::Finish(finish.root)).await;
                return Ok(());
            }
            Some(In::Delete(_)) => return Err(SyncError::BadRequest("`delete` after `archive`".into())),
            Some(In::Start(_)) => return Err(SyncError::BadRequest("a second `start`".into())),
            None => return Err(SyncError::BadRequest("the host ended the call before `finish`".into())),
        };
        if !worker.send(work).await {
            return Ok(());
        }
    }
}

async fn next(requests: &mut Streaming<SyncRequest>) -> Result<Option<In>, SyncError> {
    match requests.message().await {
        Ok(Some(message)) => Ok(message.kind),
        Ok(None) => Ok(None),
        Err(status) => Err(SyncError::Request(crate::untrusted::request_error(&status))),
    }
}

async fn send(tx: &mpsc::Sender<Result<SyncResponse, Status>>, kind: Out) -> Result<(), SyncError> {
    tx.send(Ok(SyncResponse { kind: Some(kind) })).await.map_err(|_| SyncError::BadRequest("the host went away".into()))
}

/// Runs blocking work on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, SyncError> + Send + 'static) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SyncError::BadRequest(format!("worker panicked: {e}")))?
}
