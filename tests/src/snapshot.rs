//! Helpers for `--ro` snapshot tests: an agent that keeps snapshots under a
//! private prefix (so the "same absolute path" differs from the host tree on
//! this one machine), full tree listings to compare, and a raw Sync client
//! for feeding the agent hand-made archives.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use hutch_proto::v1::sync_request::Kind as Out;
use hutch_proto::v1::sync_response::Kind as In;
use hutch_proto::v1::{
    ManifestEntry, PathList, SnapshotDiffRequest, SnapshotDiffResponse, SyncFinish, SyncRequest, SyncStart, SyncSummary, WalkRules,
};
use tempfile::TempDir;

use crate::Agent;

/// An agent whose snapshots live under `prefix`, and a host tree to sync.
pub struct SnapshotAgent {
    /// The running agent.
    pub agent: Agent,
    /// Where the agent writes snapshots (`prefix` + host path).
    pub prefix: PathBuf,
    /// The agent's state dir.
    pub state: PathBuf,
    /// A temp dir for the host tree and anything else the test needs.
    pub host: TempDir,
}

impl SnapshotAgent {
    /// Starts an agent with a private snapshot prefix and state dir.
    pub fn start() -> SnapshotAgent {
        SnapshotAgent::start_with(Agent::start)
    }

    /// Like [`SnapshotAgent::start`], keeping the agent's log (`Agent::log`).
    pub fn start_logged() -> SnapshotAgent {
        SnapshotAgent::start_with(Agent::start_logged)
    }

    fn start_with(start: fn(TempDir, String, Option<PathBuf>, &[&str]) -> Agent) -> SnapshotAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path().join("guest");
        let state = dir.path().join("state");
        let addr = format!("unix://{}", dir.path().join("agent.sock").display());
        let extra = ["--snapshot-prefix", prefix.to_str().expect("utf-8"), "--state-dir", state.to_str().expect("utf-8")];
        let agent = start(dir, addr, None, &extra);
        let host = tempfile::tempdir().expect("tempdir");
        SnapshotAgent { agent, prefix, state, host }
    }

    /// The host tree's root (absolute, symlinks resolved).
    pub fn root(&self) -> PathBuf {
        self.host.path().canonicalize().expect("canonical host dir").join("project")
    }

    /// Where the guest keeps the snapshot of `root`.
    pub fn snapshot(&self, root: &Path) -> PathBuf {
        self.prefix.join(root.strip_prefix("/").expect("absolute"))
    }

    /// Runs `hutch <sub> --workspace ROOT <args>` against this agent.
    pub fn hutch(&self, sub: &str, args: &[&str]) -> Output {
        let root = self.root();
        self.agent.hutch().arg(sub).arg("--workspace").arg(&root).args(args).stdin(Stdio::null()).output().expect("run hutch")
    }

    /// The agent's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.agent.dir.path().join("agent.sock")
    }
}

/// Every entry below `root` (and `root` itself as "."), with kind, mode,
/// mtime, size and contents (or symlink target), except paths in `skip`
/// (relative, with everything below them).
pub fn listing(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    visit(root, root, skip, &mut out);
    out
}

fn visit(root: &Path, path: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
    let rel = path.strip_prefix(root).expect("below root").to_string_lossy().into_owned();
    let rel = if rel.is_empty() { ".".to_owned() } else { rel };
    if skip.contains(&rel.as_str()) {
        return;
    }
    let meta = std::fs::symlink_metadata(path).expect("lstat");
    let ft = meta.file_type();
    let mtime = format!("{}.{:09}", meta.mtime(), meta.mtime_nsec());
    let mode = meta.permissions().mode() & 0o7777;
    let line = if ft.is_symlink() {
        format!("link -> {} @{mtime}", std::fs::read_link(path).expect("readlink").display())
    } else if ft.is_dir() {
        format!("dir {mode:o} @{mtime}")
    } else {
        let data = std::fs::read(path).expect("read");
        format!("file {mode:o} {} {:016x} @{mtime}", data.len(), fnv(&data))
    };
    out.insert(rel, line);
    if ft.is_dir() {
        let mut children: Vec<_> = std::fs::read_dir(path).expect("read_dir").map(|e| e.expect("entry").path()).collect();
        children.sort();
        for child in children {
            visit(root, &child, skip, out);
        }
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Asserts two listings are equal, showing the differing lines.
pub fn assert_same(host: &BTreeMap<String, String>, guest: &BTreeMap<String, String>) {
    let mut diff = Vec::new();
    for (k, v) in host {
        match guest.get(k) {
            Some(g) if g == v => {}
            Some(g) => diff.push(format!("~ {k}: host {v} / guest {g}")),
            None => diff.push(format!("- {k}: only on the host ({v})")),
        }
    }
    for (k, v) in guest {
        if !host.contains_key(k) {
            diff.push(format!("+ {k}: only in the guest ({v})"));
        }
    }
    assert!(diff.is_empty(), "trees differ:\n{}", diff.join("\n"));
}

/// Runs one Sync call by hand: `start` for `root`, the guest's manifest is
/// read and returned, then `deletes`, `archive` (already compressed) in
/// chunks, `finish`. Returns the manifest and the outcome.
pub fn raw_sync(
    socket: &Path,
    root: &str,
    deletes: Vec<Vec<u8>>,
    archive: Vec<u8>,
) -> (Vec<ManifestEntry>, Result<SyncSummary, tonic::Status>) {
    let mut requests = vec![delete(deletes)];
    requests.extend(archive_chunks(&archive));
    requests.push(finish());
    raw_sync_requests(socket, root, requests)
}

/// A `delete` request.
pub fn delete(paths: Vec<Vec<u8>>) -> SyncRequest {
    SyncRequest { kind: Some(Out::Delete(PathList { paths })) }
}

/// `archive` cut into 64 KiB `archive` requests.
pub fn archive_chunks(archive: &[u8]) -> Vec<SyncRequest> {
    archive.chunks(64 * 1024).map(|c| SyncRequest { kind: Some(Out::Archive(c.to_vec())) }).collect()
}

/// The `finish` request.
pub fn finish() -> SyncRequest {
    SyncRequest { kind: Some(Out::Finish(SyncFinish { root: None })) }
}

/// A `start` request for `root`.
pub fn start(root: &str) -> SyncRequest {
    SyncRequest { kind: Some(Out::Start(SyncStart { root: root.to_owned(), rules: Some(WalkRules::default()), push: false })) }
}

/// Runs one Sync call by hand: `start` for `root`, the guest's manifest is
/// read and returned, then `requests` are sent as they are. Returns the
/// manifest and the outcome (the summary, or the status the call ended with).
pub fn raw_sync_requests(
    socket: &Path,
    root: &str,
    requests: Vec<SyncRequest>,
) -> (Vec<ManifestEntry>, Result<SyncSummary, tonic::Status>) {
    crate::raw::block_on(async {
        let mut client = crate::raw::connect(socket).await;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tx.send(start(root)).await.expect("queue start");
        let mut responses = match client.sync(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => return (Vec::new(), Err(status)),
        };
        let mut manifest = Vec::new();
        loop {
            match responses.message().await {
                Ok(Some(m)) => match m.kind {
                    Some(In::Manifest(chunk)) => manifest.extend(chunk.entries),
                    Some(In::ManifestEnd(_)) => break,
                    other => panic!("unexpected {other:?}"),
                },
                Ok(None) => panic!("stream ended before the manifest"),
                Err(status) => return (manifest, Err(status)),
            }
        }
        tokio::spawn(async move {
            for r in requests {
                if tx.send(r).await.is_err() {
                    break;
                }
            }
        });
        let outcome = match responses.message().await {
            Ok(Some(m)) => match m.kind {
                Some(In::Summary(s)) => Ok(s),
                other => panic!("unexpected {other:?}"),
            },
            Ok(None) => panic!("stream ended without a summary"),
            Err(status) => Err(status),
        };
        (manifest, outcome)
    })
}

/// Runs one SnapshotDiff call for `root` and collects every response, or
/// the status it ended with.
pub fn raw_diff(socket: &Path, root: &str) -> Result<Vec<SnapshotDiffResponse>, tonic::Status> {
    crate::raw::block_on(async {
        let mut client = crate::raw::connect(socket).await;
        let mut stream = client.snapshot_diff(SnapshotDiffRequest { root: root.to_owned() }).await?.into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream.message().await? {
            out.push(m);
        }
        Ok(out)
    })
}

/// Compresses a tar archive the way hutch does.
pub fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(tar, 1).expect("zstd")
}
