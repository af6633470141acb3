//! `SnapshotDiff`: what the guest changed in a snapshot since its last Sync.
//!
//! The agent compares a fresh walk of the snapshot with the manifest it
//! stored at the last Sync and reports each added, modified or deleted file
//! or symlink, with the current contents of files. It never holds the
//! originals: the host has them, and makes the patch.
//!
//! The snapshot is the guest's to change while it is read. The root is
//! opened without following symlinks ([`super::root`]); each file is opened
//! with `O_NOFOLLOW | O_NONBLOCK` (a FIFO swapped in since the walk would
//! otherwise block the open for ever) and must still be a regular file, and
//! no more than its size at that moment is sent. Anything else ends the
//! call with ABORTED, naming the path: the diff is retried, not guessed.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use hutch_proto::v1::snapshot_diff_response::Kind;
use hutch_proto::v1::{ChangedEntry, EntryKind, ManifestEntry, SnapshotDiffRequest, SnapshotDiffResponse};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat};
use tokio::sync::mpsc;
use tonic::Status;

use super::root::SnapshotRoot;
use super::session::blocking;
use super::validate::{self, SafeRoot};
use super::{Config, SyncError, state};
use crate::untrusted::shown;

/// Bytes of file contents per `data` message.
const DATA_CHUNK: usize = 1 << 20;

/// Serves one SnapshotDiff call.
pub async fn run(config: Arc<Config>, request: SnapshotDiffRequest, tx: mpsc::Sender<Result<SnapshotDiffResponse, Status>>) {
    // One call at a time per root: a diff during a Sync would see the
    // host's half-applied files as guest changes.
    let _lock = config.locks.lock(&request.root).await;
    let result = blocking(move || stream(&config, &request, &tx)).await;
    if let Err(e) = result {
        tracing::warn!("snapshot diff failed: {e}");
    }
    crate::malloc::trim();
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
    let saved = state::load(&config.state_dir, &request.root)
        .map_err(SyncError::io("reading the snapshot state"))?
        .ok_or_else(|| SyncError::NeverSynced(crate::untrusted::shown_str(&request.root)))?;
    let snapshot = SnapshotRoot::open(config, &request.root, false)?;
    let rules = saved.rules.unwrap_or_default();
    let now = hutch_proto::tree::walk(&snapshot.walk_path(), &rules)?;
    let tracked = |e: &ManifestEntry| e.kind != EntryKind::EntryDirectory as i32;
    let before: BTreeMap<&[u8], &ManifestEntry> = saved.entries.iter().filter(|e| tracked(e)).map(|e| (e.path.as_slice(), e)).collect();
    let after: BTreeMap<&[u8], &ManifestEntry> = now.entries.iter().filter(|e| tracked(e)).map(|e| (e.path.as_slice(), e)).collect();
    let mut paths: Vec<&[u8]> = before.keys().chain(after.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut root = SafeRoot::new(snapshot.into_fd());
    for path in paths {
        let (synced, current) = (before.get(path).copied(), after.get(path).copied());
        if let (Some(a), Some(b)) = (synced, current)
            && hutch_proto::tree::unchanged(a, b)
        {
            continue;
        }
        let entry = ChangedEntry { path: path.to_vec(), synced: synced.cloned(), current: current.cloned(), too_large: false };
        send(tx, Kind::Entry(entry))?;
        if let Some(file) = current.filter(|c| c.kind == EntryKind::EntryFile as i32) {
            send_contents(&mut root, &file.path, tx)?;
        }
    }
    Ok(())
}

fn send_contents(root: &mut SafeRoot, path: &[u8], tx: &mpsc::Sender<Result<SnapshotDiffResponse, Status>>) -> Result<(), SyncError> {
    let changed = |why: &str| SyncError::Changed(format!("\"{}\" {why} while the diff read it: run the diff again", shown(path)));
    let parts = validate::components(path).map_err(|e| SyncError::BadRequest(format!("\"{}\": {e}", shown(path))))?;
    let parent = root.parent(&parts, false).map_err(|_| changed("moved"))?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(parent, parts[parts.len() - 1], flags, Mode::empty()).map_err(|_| changed("changed"))?;
    let st = fstat(&fd).map_err(|e| SyncError::Io { what: format!("reading \"{}\"", shown(path)), source: e.into() })?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(changed("is no longer a regular file"));
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let mut file = std::fs::File::from(fd).take(size);
    let mut buf = vec![0; DATA_CHUNK.min(usize::try_from(size).unwrap_or(DATA_CHUNK)).max(1)];
    loop {
        let n = file.read(&mut buf).map_err(|e| SyncError::Io { what: format!("reading \"{}\"", shown(path)), source: e })?;
        if n == 0 {
            return Ok(());
        }
        send(tx, Kind::Data(buf[..n].to_vec()))?;
    }
}

fn send(tx: &mpsc::Sender<Result<SnapshotDiffResponse, Status>>, kind: Kind) -> Result<(), SyncError> {
    tx.blocking_send(Ok(SnapshotDiffResponse { kind: Some(kind) })).map_err(|_| SyncError::BadRequest("the host went away".into()))
}
