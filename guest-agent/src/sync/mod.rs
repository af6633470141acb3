//! `--ro` snapshots in the guest: the receiving end of `Sync` and the source
//! of `SnapshotDiff`.
//!
//! A snapshot of host folder `/p` lives at `/p` on guest-local disk (under
//! `--snapshot-prefix` when the agent runs beside the host, as in tests). A
//! Sync walks it ([`hutch_proto::tree`]), sends that manifest, then applies
//! what the host sends back ([`receive`]) after checking every path
//! ([`validate`]), and stores the resulting manifest ([`state`]) for
//! [`diff`].

pub mod diff;
pub mod owner;
pub mod receive;
pub mod session;
pub mod state;
pub mod validate;

use std::path::{Path, PathBuf};

use tonic::Status;

/// Where snapshots and their state live.
#[derive(Clone, Debug)]
pub struct Config {
    /// Folder for the agent's own state (`snapshots/*.state`).
    pub state_dir: PathBuf,
    /// Prefix for snapshot paths: empty in a VM (same path as on the host).
    pub prefix: Option<PathBuf>,
}

/// Why a Sync or SnapshotDiff call failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The request is malformed (no start, a relative root, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The host sent an entry the agent does not accept.
    #[error(transparent)]
    Apply(#[from] receive::ApplyError),
    /// Walking the snapshot failed.
    #[error(transparent)]
    Walk(#[from] hutch_proto::tree::WalkError),
    /// No Sync was recorded for this root.
    #[error("no snapshot of {0} was synced by this agent")]
    NeverSynced(String),
    /// A local operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the agent was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl SyncError {
    /// The gRPC status the host sees.
    pub fn status(&self) -> Status {
        match self {
            SyncError::BadRequest(m) => Status::invalid_argument(m.clone()),
            SyncError::Apply(receive::ApplyError::Refused { .. }) => Status::invalid_argument(self.to_string()),
            SyncError::NeverSynced(_) => Status::failed_precondition(self.to_string()),
            _ => Status::internal(self.to_string()),
        }
    }

    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SyncError {
        let what = what.into();
        move |source| SyncError::Io { what, source }
    }
}

impl Config {
    /// Where the snapshot of host folder `root` lives in this guest. `root`
    /// must be absolute and free of `.`/`..` components.
    pub fn snapshot_path(&self, root: &str) -> Result<PathBuf, SyncError> {
        let path = Path::new(root);
        let clean = path.is_absolute()
            && path.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)))
            && !root.contains("/./")
            && !root.ends_with("/.");
        if !clean || root == "/" {
            return Err(SyncError::BadRequest(format!("snapshot root {root:?} must be an absolute folder path without . or ..")));
        }
        Ok(match &self.prefix {
            Some(prefix) => prefix.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        })
    }
}
