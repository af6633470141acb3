//! `--ro` snapshots, the sending side: walk the host's tree, compare it with
//! the guest's manifest, send what differs ([`plan`], [`send`]), and turn the
//! guest's changes back into a patch ([`diff`]).
//!
//! The guest's snapshot ends up equal to the host's tree as `rsync -a
//! --delete` would leave it (contents, modes, symlinks, mtimes), restricted to
//! what the walk rules include; files the guest changed are reset to the
//! host's version. A sync where nothing changed costs two parallel walks (one
//! on each side, at the same time) and one round trip.

pub mod apply;
pub mod beneath;
pub mod diff;
pub mod live;
pub mod plan;
pub mod quote;
pub mod send;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hutch_proto::tree::Tree;
use hutch_proto::v1::sync_request::Kind as Out;
use hutch_proto::v1::sync_response::Kind as In;
use hutch_proto::v1::{
    EntryKind, ManifestEntry, PathList, PathManifest, SyncFinish, SyncRequest, SyncResponse, SyncStart, SyncSummary, WalkRules,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::transport::{CallError, Client};
use crate::untrusted::deadline::{Deadline, Expired};
use crate::untrusted::protocol::known;
use crate::untrusted::{GuestPath, ProtocolError, limits, text};

/// Paths per `delete` message.
const DELETE_CHUNK: usize = 4096;
/// Requests buffered towards the agent.
const REQUEST_QUEUE: usize = 8;

/// Why a sync or a diff failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The host's tree could not be walked.
    #[error(transparent)]
    Walk(#[from] hutch_proto::tree::WalkError),
    /// The agent refused or failed the call.
    #[error("the agent failed the sync: {}", text::shown(.0.message()))]
    Agent(Status),
    /// The agent does not know `Sync` (an older agent).
    #[error("the agent does not support --ro snapshots (Sync): {}", text::shown(.0.message()))]
    Unsupported(Status),
    /// The agent broke the protocol, or went silent.
    #[error(transparent)]
    Call(#[from] CallError),
    /// hutch itself failed (a task it started).
    #[error("{0}")]
    Internal(String),
    /// Reading host files failed.
    #[error("{what}: {source}")]
    Local {
        /// What hutch was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl SyncError {
    /// The error for a status the agent answered with.
    pub fn from_status(status: Status) -> Self {
        match status.code() {
            _ if CallError::is_refusal(&status) => SyncError::Call(CallError::from_status(status)),
            tonic::Code::Unimplemented => SyncError::Unsupported(status),
            _ => SyncError::Agent(status),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            SyncError::Unsupported(_) => Some("update the agent in the VM image (`cargo xtask image`)".into()),
            SyncError::Agent(s) if s.code() == tonic::Code::FailedPrecondition => Some("run `hutch sync` first".into()),
            SyncError::Call(e) => Some(e.hint()),
            _ => None,
        }
    }
}

impl From<ProtocolError> for SyncError {
    fn from(e: ProtocolError) -> Self {
        SyncError::Call(e.into())
    }
}

impl From<Expired> for SyncError {
    fn from(e: Expired) -> Self {
        SyncError::Call(e.into())
    }
}

/// For a `--ro` VM, brings its snapshot up to date with the host (a cheap
/// call when nothing changed); `None` for a VM that shares its workspace.
pub async fn refresh_snapshot(client: &mut Client, record: &crate::state::VmRecord, progress: bool) -> Result<Option<Report>, SyncError> {
    let (Some(ro), Some(root)) = (record.ro, &record.workspace) else { return Ok(None) };
    Ok(Some(sync(client, &source(root, ro.git, ro.no_ignore), progress).await?))
}

/// What to sync: a host folder and how to walk it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The host folder, absolute (the guest's snapshot has the same path).
    pub root: PathBuf,
    /// Which files the snapshot holds.
    pub rules: WalkRules,
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries on the host.
    pub entries: usize,
    /// Entries sent.
    pub sent: usize,
    /// Paths deleted in the guest.
    pub deleted: usize,
    /// Bytes of file contents sent, before and after compression.
    pub bytes: (u64, u64),
    /// The guest's snapshot did not exist before (an initial copy).
    pub fresh: bool,
    /// The agent's account.
    pub agent: SyncSummary,
    /// Wall time.
    pub took: Duration,
    /// The host's tree as this sync walked it (what the guest's copy now holds).
    pub tree: Vec<hutch_proto::v1::ManifestEntry>,
}

impl Report {
    /// One line for the user.
    pub fn line(&self) -> String {
        if self.sent == 0 && self.deleted == 0 {
            return format!("up to date ({} entries, {:.0} ms)", self.entries, self.took.as_secs_f64() * 1000.0);
        }
        format!(
            "{} {} entries ({:.1} MB, {:.1} MB compressed), deleted {}, in {:.2} s",
            if self.fresh { "copied" } else { "updated" },
            self.sent,
            self.bytes.0 as f64 / 1e6,
            self.bytes.1 as f64 / 1e6,
            self.deleted,
            self.took.as_secs_f64()
        )
    }
}

/// Brings the agent's snapshot of `source` up to date. The agent may stay
/// silent at most the call deadline at each step: before each manifest
/// chunk, and while hutch waits for the summary, counted from the last
/// request the agent took (a large archive takes as long as it takes).
pub async fn sync(client: &mut Client, source: &Source, progress: bool) -> Result<Report, SyncError> {
    let begin = Instant::now();
    let root_text = source.root.to_str().ok_or_else(|| SyncError::Internal(format!("{} is not UTF-8", source.root.display())))?.to_owned();
    let walk_root = source.root.clone();
    let rules = source.rules.clone();
    let mut walk = Walk::Running(tokio::task::spawn_blocking(move || hutch_proto::tree::walk(&walk_root, &rules)));

    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let start = SyncStart { root: root_text, rules: Some(source.rules.clone()), push: false };
    tx.send(SyncRequest { kind: Some(Out::Start(start)) }).await.map_err(|_| SyncError::Internal("request stream closed".into()))?;
    // Each request the transport takes is the agent reading: progress.
    let (taken_tx, mut taken) = watch::channel(0u64);
    let requests = ReceiverStream::new(rx).inspect(move |_| taken_tx.send_modify(|n| *n += 1));
    let deadline = client.deadline();
    let mut responses = deadline.within("Sync", client.sync_checked(requests)).await?.map_err(SyncError::from_status)?;

    let (guest, fresh) = manifest(&mut responses, &deadline, &mut walk).await?;
    let tree = walk.finish().await?;
    let plan = plan::compare(&tree.entries, guest);
    let mut report =
        Report { entries: tree.entries.len(), sent: plan.sends.len(), deleted: plan.deletes.len(), fresh, ..Report::default() };
    let tree_root = tree.root;
    report.tree = tree.entries;

    // Requests go out from their own task, so an agent that refuses an entry
    // (and ends the call) is heard at once instead of after the whole archive.
    let root = source.root.clone();
    let sender = tokio::spawn(async move {
        for chunk in plan.deletes.chunks(DELETE_CHUNK) {
            let list = PathList { paths: chunk.to_vec() };
            if tx.send(SyncRequest { kind: Some(Out::Delete(list)) }).await.is_err() {
                return Ok((0, 0));
            }
        }
        let mut bytes = (0, 0);
        if !plan.sends.is_empty() {
            let archive_tx = tx.clone();
            let sends = plan.sends;
            let total = plan.bytes;
            let blocking_root = root.clone();
            let archived = tokio::task::spawn_blocking(move || send::archive(&blocking_root, &sends, total, archive_tx, progress))
                .await
                .map_err(|e| SyncError::Internal(format!("the archiver failed: {e}")))?
                .map_err(|e| SyncError::Local { what: format!("archiving {}", root.display()), source: e })?;
            bytes = (archived.raw, archived.compressed);
        }
        let finish = SyncFinish { root: Some(tree_root) };
        let _ = tx.send(SyncRequest { kind: Some(Out::Finish(finish)) }).await;
        Ok::<_, SyncError>(bytes)
    });
    let summary = loop {
        tokio::select! {
            message = responses.message() => match message.map_err(SyncError::from_status)?.and_then(|m| m.kind) {
                Some(In::Summary(summary)) => break summary,
                other => return Err(ProtocolError::Unexpected(unexpected(other.as_ref(), "the summary")).into()),
            },
            news = tokio::time::timeout(deadline.after(), taken.changed()) => match news {
                Ok(Ok(())) => {}
                // Every request was taken: the agent has the deadline to answer.
                Ok(Err(_)) => {
                    break match deadline.within("Sync", responses.message()).await?.map_err(SyncError::from_status)?.and_then(|m| m.kind) {
                        Some(In::Summary(summary)) => summary,
                        other => return Err(ProtocolError::Unexpected(unexpected(other.as_ref(), "the summary")).into()),
                    };
                }
                Err(_) => return Err(deadline.expired("Sync").into()),
            },
        }
    };
    report.bytes = sender.await.map_err(|e| SyncError::Internal(format!("the sender failed: {e}")))??;
    report.agent = summary;
    report.took = begin.elapsed();
    Ok(report)
}

/// The host's walk of the tree, running or done.
enum Walk {
    /// Still walking.
    Running(JoinHandle<Result<Tree, hutch_proto::tree::WalkError>>),
    /// Walked.
    Done(Tree),
}

impl Walk {
    /// The walk's tree, waiting for it if need be.
    async fn tree(&mut self) -> Result<&Tree, SyncError> {
        if let Walk::Running(handle) = self {
            let tree = handle.await.map_err(|e| SyncError::Internal(format!("the walker failed: {e}")))??;
            *self = Walk::Done(tree);
        }
        match self {
            Walk::Done(tree) => Ok(tree),
            Walk::Running(_) => Err(SyncError::Internal("the walk did not finish".into())),
        }
    }

    /// The tree, owned.
    async fn finish(mut self) -> Result<Tree, SyncError> {
        self.tree().await?;
        match self {
            Walk::Done(tree) => Ok(tree),
            Walk::Running(_) => Err(SyncError::Internal("the walk did not finish".into())),
        }
    }
}

/// The guest's manifest (and whether the snapshot is new), each entry
/// checked: a plain relative path, a known kind. The guest's snapshot holds
/// what the host sent plus what the guest created, so it may exceed the
/// host's tree by [`limits::MANIFEST_EXTRA_ENTRIES`] and no more (until
/// that many arrived, the host's walk need not be finished to tell).
async fn manifest(
    responses: &mut Streaming<SyncResponse>,
    deadline: &Deadline,
    walk: &mut Walk,
) -> Result<(Vec<ManifestEntry>, bool), SyncError> {
    let extra = limits::MANIFEST_EXTRA_ENTRIES;
    let mut guest = Vec::new();
    loop {
        let message = deadline.within("Sync", responses.message()).await?.map_err(SyncError::from_status)?;
        match message.and_then(|m| m.kind) {
            Some(In::Manifest(PathManifest { entries })) => {
                for entry in &entries {
                    check_entry(entry)?;
                }
                guest.extend(entries);
                if guest.len() as u64 > extra.max {
                    let host = walk.tree().await?.entries.len() as u64;
                    extra.check((guest.len() as u64).saturating_sub(host)).map_err(ProtocolError::from)?;
                }
            }
            Some(In::ManifestEnd(end)) => return Ok((guest, end.fresh)),
            other => return Err(ProtocolError::Unexpected(unexpected(other.as_ref(), "the manifest")).into()),
        }
    }
}

/// A manifest entry as the protocol allows it.
fn check_entry(entry: &ManifestEntry) -> Result<(), ProtocolError> {
    GuestPath::from_bytes(&entry.path).map_err(|why| ProtocolError::path(&entry.path, why))?;
    limits::PATH_BYTES.check_len(entry.link_target.len())?;
    match known::<EntryKind>("a manifest entry kind", entry.kind)? {
        EntryKind::Unspecified => Err(ProtocolError::UnknownValue { what: "a manifest entry kind", value: 0 }),
        _ => Ok(()),
    }
}

/// What the agent sent where `wanted` was due, as a protocol error says it
/// (never the message itself: it is the guest's, and may be megabytes).
fn unexpected(got: Option<&In>, wanted: &'static str) -> &'static str {
    match (got, wanted) {
        (None, _) => "ended the sync early",
        (Some(In::Summary(_)), _) => "sent the summary before the manifest ended",
        (Some(In::Manifest(_) | In::ManifestEnd(_)), "the summary") => "sent a manifest where the summary was due",
        _ => "sent a message out of order in a sync",
    }
}

/// The source for a `--ro` VM: its workspace and the rules it was created with.
pub fn source(root: &Path, include_git: bool, no_ignore: bool) -> Source {
    Source { root: root.to_path_buf(), rules: WalkRules { include_git, no_ignore, exclude_dirs: Vec::new() } }
}
