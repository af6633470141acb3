//! One `Sync` call: start, manifest out, deletions and archive in, summary out.
//!
//! The gRPC side is async; walking and writing files is blocking work, done on
//! tokio's blocking pool. Archive chunks travel from the call to the unpacker
//! through a bounded channel read as one `Read` stream, so a large initial
//! copy is decompressed and written while it is still arriving.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use hutch_proto::v1::sync_request::Kind as In;
use hutch_proto::v1::sync_response::Kind as Out;
use hutch_proto::v1::{ManifestEnd, ManifestEntry, PathManifest, SnapshotState, SyncRequest, SyncResponse};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::receive::Applier;
use super::validate::SafeRoot;
use super::{Config, SyncError, state};

/// Entries per manifest message (well under gRPC's 4 MiB message limit).
const MANIFEST_CHUNK: usize = 4096;
/// Archive chunks buffered between the call and the unpacker.
const ARCHIVE_QUEUE: usize = 16;

/// The archive's way into the unpacker, and the unpacker's outcome.
type Unpacking = (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<Result<Applier, SyncError>>);

/// Serves one Sync call; errors end the call with their status.
pub async fn run(config: Arc<Config>, requests: Streaming<SyncRequest>, tx: mpsc::Sender<Result<SyncResponse, Status>>) {
    if let Err(e) = serve(config, requests, &tx).await {
        tracing::warn!("sync failed: {e}");
        let _ = tx.send(Err(e.status())).await;
    }
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
    let dest = config.snapshot_path(&start.root)?;
    let fresh = !dest.exists();
    std::fs::create_dir_all(&dest).map_err(SyncError::io(format!("creating {}", dest.display())))?;
    if fresh && let Some(user) = crate::exec::user::get() {
        std::os::unix::fs::chown(&dest, Some(user.uid), Some(user.gid)).map_err(SyncError::io(format!(
            "giving {} to {}",
            dest.display(),
            user.name
        )))?;
    }

    let walk_dest = dest.clone();
    let tree = blocking(move || hutch_proto::tree::walk(&walk_dest, &rules).map_err(SyncError::from)).await?;
    let count = tree.entries.len() as u64;
    for chunk in tree.entries.chunks(MANIFEST_CHUNK) {
        send(tx, Out::Manifest(PathManifest { entries: chunk.to_vec() })).await?;
    }
    send(tx, Out::ManifestEnd(ManifestEnd { entries: count, fresh })).await?;

    let expected: BTreeMap<Vec<u8>, ManifestEntry> = tree.entries.into_iter().map(|e| (e.path.clone(), e)).collect();
    let root = SafeRoot::open(&dest).map_err(|e| SyncError::Io { what: format!("opening {}", dest.display()), source: e.into() })?;
    let mut applier = Some(Applier::new(root, expected));
    let mut deletes: Vec<Vec<u8>> = Vec::new();
    let mut unpacking: Option<Unpacking> = None;
    let finish = loop {
        match next(&mut requests).await? {
            Some(In::Delete(list)) if unpacking.is_none() => deletes.extend(list.paths),
            Some(In::Archive(chunk)) => {
                if unpacking.is_none() {
                    let (chunk_tx, chunk_rx) = mpsc::channel(ARCHIVE_QUEUE);
                    let mut a = applier.take().ok_or_else(|| SyncError::BadRequest("archive after the end".into()))?;
                    let dels = std::mem::take(&mut deletes);
                    let task = tokio::task::spawn_blocking(move || {
                        for path in &dels {
                            a.delete(path)?;
                        }
                        let mut reader = ChunkReader { rx: chunk_rx, buf: Vec::new(), pos: 0 };
                        a.unpack(&mut reader)?;
                        // Whatever follows the end of the archive (padding) is read and dropped.
                        let _ = std::io::copy(&mut reader, &mut std::io::sink());
                        Ok(a)
                    });
                    unpacking = Some((chunk_tx, task));
                }
                // A send fails when the unpacker stopped; its error is reported below.
                if let Some((chunk_tx, _)) = &unpacking
                    && chunk_tx.send(chunk).await.is_err()
                {
                    break None;
                }
            }
            Some(In::Finish(finish)) => break Some(finish),
            Some(In::Delete(_)) => return Err(SyncError::BadRequest("`delete` after `archive`".into())),
            Some(In::Start(_)) => return Err(SyncError::BadRequest("a second `start`".into())),
            None => return Err(SyncError::BadRequest("the host ended the call before `finish`".into())),
        }
    };
    let mut applier = match (unpacking, applier) {
        (Some((chunk_tx, task)), _) => {
            drop(chunk_tx);
            task.await.map_err(|e| SyncError::BadRequest(format!("unpacker panicked: {e}")))??
        }
        (None, Some(mut a)) => {
            blocking(move || {
                for path in &deletes {
                    a.delete(path)?;
                }
                Ok(a)
            })
            .await?
        }
        (None, None) => return Err(SyncError::BadRequest("nothing to apply".into())),
    };
    let Some(finish) = finish else { return Err(SyncError::BadRequest("the archive ended early".into())) };
    let state_dir = config.state_dir.clone();
    let root_name = start.root.clone();
    let summary = blocking(move || {
        applier.finish(finish.root.as_ref())?;
        if applier.changed || !state::exists(&state_dir, &root_name) {
            let entries: Vec<ManifestEntry> = std::mem::take(&mut applier.expected).into_values().collect();
            let snapshot = SnapshotState { root: root_name, rules: Some(rules), entries };
            state::save(&state_dir, &snapshot).map_err(SyncError::io(format!("saving the snapshot state in {}", state_dir.display())))?;
        }
        let mut summary = applier.summary;
        summary.duration_ms = u64::try_from(begin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(summary)
    })
    .await?;
    send(tx, Out::Summary(summary)).await
}

async fn next(requests: &mut Streaming<SyncRequest>) -> Result<Option<In>, SyncError> {
    match requests.message().await {
        Ok(Some(message)) => Ok(message.kind),
        Ok(None) => Ok(None),
        Err(status) => Err(SyncError::BadRequest(format!("the host's stream failed: {}", status.message()))),
    }
}

async fn send(tx: &mpsc::Sender<Result<SyncResponse, Status>>, kind: Out) -> Result<(), SyncError> {
    tx.send(Ok(SyncResponse { kind: Some(kind) })).await.map_err(|_| SyncError::BadRequest("the host went away".into()))
}

/// Runs blocking work on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, SyncError> + Send + 'static) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SyncError::BadRequest(format!("worker panicked: {e}")))?
}

/// The archive chunks of one call as one byte stream.
struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
