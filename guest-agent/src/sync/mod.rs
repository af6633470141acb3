//! `--ro` snapshots in the guest: the receiving end of `Sync` and the source
//! of `SnapshotDiff`.
//!
//! A snapshot of host folder `/p` lives at `/p` on guest-local disk (under
//! `--snapshot-prefix` when the agent runs beside the host, as in tests). A
//! Sync walks it ([`hutch_proto::tree`]), sends that manifest, then applies
//! what the host sends back ([`receive`], on the blocking [`worker`]) after
//! checking every path ([`validate`]) and every tar header ([`archive`]),
//! and stores the resulting manifest ([`state`]) for [`diff`]. Roots are
//! opened without following symlinks ([`root`]) and one call at a time per
//! root ([`lock`]). A synced copy's `Watch` runs at a lower CPU priority
//! than the guest's commands ([`background`]).

pub mod agreed;
pub mod archive;
pub mod background;
pub mod diff;
pub mod lock;
pub mod owner;
#[cfg(test)]
mod props;
pub mod receive;
pub mod root;
pub mod session;
pub mod state;
pub mod validate;
pub mod watch;
pub mod worker;

use std::path::PathBuf;

use tonic::Status;

use self::lock::RootLocks;

/// Where snapshots and their state live.
#[derive(Clone)]
pub struct Config {
    /// Folder for the agent's own state (`snapshots/*.state`).
    pub state_dir: PathBuf,
    /// Prefix for snapshot paths: empty in a VM (same path as on the host).
    pub prefix: Option<PathBuf>,
    /// One call at a time per snapshot root.
    pub locks: RootLocks,
    /// The synced workspaces' agreed states, while their Watch calls live.
    pub agreed: agreed::Agreements,
    /// How copies are watched (inotify on Linux; `--watch poll` forces polling).
    pub watch_method: hutch_proto::watch::Method,
}

impl Config {
    /// Snapshots at their host paths (under `prefix` if given), their state
    /// under `state_dir`.
    pub fn new(state_dir: PathBuf, prefix: Option<PathBuf>) -> Config {
        Config {
            state_dir,
            prefix,
            locks: RootLocks::default(),
            agreed: agreed::Agreements::default(),
            watch_method: hutch_proto::watch::Method::native(),
        }
    }
}

/// Why a Sync or SnapshotDiff call failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The request is malformed (no start, a relative root, ...).
    #[error("{0}")]
    BadRequest(String),
    /// A request message could not be decoded (the status says why).
    #[error("{}", .0.message())]
    Request(Status),
    /// The host sent an entry the agent does not accept.
    #[error(transparent)]
    Apply(#[from] receive::ApplyError),
    /// Walking the snapshot failed.
    #[error(transparent)]
    Walk(#[from] hutch_proto::tree::WalkError),
    /// No Sync was recorded for this root.
    #[error("no snapshot of {0} was synced by this agent")]
    NeverSynced(String),
    /// A push Sync for a root no Watch call watches.
    #[error("no Watch call watches {0}: a push needs the guest's watch, to leave the guest's changes alone")]
    NoWatch(String),
    /// The copy cannot be watched.
    #[error(transparent)]
    Watch(#[from] hutch_proto::watch::WatchError),
    /// The snapshot changed under a diff in a way it cannot report.
    #[error("{0}")]
    Changed(String),
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
        use receive::ApplyError;
        match self {
            SyncError::BadRequest(m) => Status::invalid_argument(m.clone()),
            SyncError::Request(status) => status.clone(),
            SyncError::Apply(ApplyError::Refused { .. } | ApplyError::Archive(_)) => Status::invalid_argument(self.to_string()),
            SyncError::Apply(ApplyError::NoSpace { .. }) => Status::resource_exhausted(self.to_string()),
            SyncError::Apply(ApplyError::Os { source, .. }) | SyncError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                Status::resource_exhausted(self.to_string())
            }
            SyncError::NeverSynced(_) | SyncError::NoWatch(_) => Status::failed_precondition(self.to_string()),
            SyncError::Changed(_) => Status::aborted(self.to_string()),
            _ => Status::internal(self.to_string()),
        }
    }

    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SyncError {
        let what = what.into();
        move |source| SyncError::Io { what, source }
    }
}
