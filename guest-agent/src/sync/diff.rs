//! `SnapshotDiff`: what the guest changed in a snapshot since its last Sync.
//!
//! The agent compares a fresh walk of the snapshot with the manifest it
//! stored at the last Sync and reports each added, modified or deleted file
//! or symlink, with the current contents of files. It never holds the
//! originals: the host has them, and makes the patch.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use hutch_proto::v1::snapshot_diff_response::Kind;
use hutch_proto::v1::{ChangedEntry, EntryKind, ManifestEntry, SnapshotDiffRequest, SnapshotDiffResponse};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use tokio::sync::mpsc;
use tonic::Status;

use super::session::blocking;
use super::validate::{self, SafeRoot};
use super::{Config, SyncError, state};

/// Bytes of file contents per `data` message.
const DATA_CHUNK: usize = 1 << 20;

/// Serves one SnapshotDiff call.
pub async fn run(config: Arc<Config>, request: SnapshotDiffRequest, tx: mpsc::Sender<Result<SnapshotDiffResponse, Status>>) {
    let result = blocking(move || stream(&config, &request, &tx)).await;
    if let Err(e) = result {
        tracing::warn!("snapshot diff failed: {e}");
        // The blocking worker holds no sender any more; this one is a clone.
    }
}

fn stream(
    config: &Config,
    request: &SnapshotDiffRequest,
    tx: &mpsc::Sender<Result<SnapshotDiffResponse, Status>>,
) -> Result<(), SyncError> {
    match changes(config, request, tx) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = tx.blocking_send(Err(e.status()));
            Err(e)
        }
    }
}

fn changes(
    config: &Config,
    request: &SnapshotDiffRequest,
    tx: &mpsc::Sender<Result<SnapshotDiffResponse, Status>>,
) -> Result<(), SyncError> {
    let dest = config.snapshot_path(&request.root)?;
    let saved = state::load(&config.state_dir, &request.root)
        .map_err(SyncError::io("reading the snapshot state"))?
        .ok_or_else(|| SyncError::NeverSynced(request.root.clone()))?;
    let rules = saved.rules.unwrap_or_default();
    let now = hutch_proto::tree::walk(&dest, &rules)?;
    let tracked = |e: &ManifestEntry| e.kind != EntryKind::EntryDirectory as i32;
    let before: BTreeMap<&[u8], &ManifestEntry> = saved.entries.iter().filter(|e| tracked(e)).map(|e| (e.path.as_slice(), e)).collect();
    let after: BTreeMap<&[u8], &ManifestEntry> = now.entries.iter().filter(|e| tracked(e)).map(|e| (e.path.as_slice(), e)).collect();
    let mut paths: Vec<&[u8]> = before.keys().chain(after.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut root = SafeRoot::open(&dest).map_err(|e| SyncError::Io { what: format!("opening {}", dest.display()), source: e.into() })?;
    for path in paths {
        let (synced, current) = (before.get(path).copied(), after.get(path).copied());
        if let (Some(a), Some(b)) = (synced, current)
            && hutch_proto::tree::unchanged(a, b)
        {
            continue;
        }
        let entry = ChangedEntry { path: path.to_vec(), synced: synced.cloned(), current: current.cloned() };
        send(tx, Kind::Entry(entry))?;
        if let Some(file) = current.filter(|c| c.kind == EntryKind::EntryFile as i32) {
            send_contents(&mut root, &file.path, tx)?;
        }
    }
    Ok(())
}

fn send_contents(root: &mut SafeRoot, path: &[u8], tx: &mpsc::Sender<Result<SnapshotDiffResponse, Status>>) -> Result<(), SyncError> {
    let shown = String::from_utf8_lossy(path).into_owned();
    let parts = validate::components(path).map_err(|e| SyncError::BadRequest(format!("{shown}: {e}")))?;
    let io = |e: std::io::Error| SyncError::Io { what: format!("reading {shown}"), source: e };
    let parent = root.parent(&parts, false).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let fd = openat(parent, parts[parts.len() - 1], OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io(e.into()))?;
    let mut file = std::fs::File::from(fd);
    let mut buf = vec![0; DATA_CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        send(tx, Kind::Data(buf[..n].to_vec()))?;
    }
}

fn send(tx: &mpsc::Sender<Result<SnapshotDiffResponse, Status>>, kind: Kind) -> Result<(), SyncError> {
    tx.blocking_send(Ok(SnapshotDiffResponse { kind: Some(kind) })).map_err(|_| SyncError::BadRequest("the host went away".into()))
}
