//! How the guest reaches the workspace the host shares, as the backend set it
//! up. The agent uses this to make the workspace appear at the host's absolute
//! path; the backend only records it (in `VmRecord::backend_state`).

use std::path::PathBuf;

use hutch_proto::v1;
use hutch_proto::v1::workspace_share::Kind;
use serde::{Deserialize, Serialize};

/// The shared workspace and how the guest sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceShare {
    /// The host folder; the guest should see it at this same path.
    pub host_path: PathBuf,
    /// How it reaches the guest.
    pub source: ShareSource,
}

/// How a shared folder reaches the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShareSource {
    /// The VM manager mounts it at the host's path itself (Lima's `mounts`):
    /// nothing left to do in the guest.
    SamePath,
    /// A `tart run --dir=NAME:PATH` share: macOS guests see it at
    /// `/Volumes/My Shared Files/NAME`; Linux guests mount the virtiofs tag
    /// `com.apple.virtio-fs.automount` and find it in subfolder NAME (the
    /// agent's `Prepare` does either).
    TartDir {
        /// The share's name.
        name: String,
        /// Shared read-only (`:ro`).
        read_only: bool,
    },
}

impl WorkspaceShare {
    /// The same, as the agent's `Prepare` call takes it.
    pub fn to_proto(&self) -> v1::WorkspaceShare {
        let kind = match &self.source {
            ShareSource::SamePath => Kind::MountedAt(self.host_path.display().to_string()),
            ShareSource::TartDir { name, read_only } => Kind::TartShare(v1::TartShare { name: name.clone(), read_only: *read_only }),
        };
        v1::WorkspaceShare { kind: Some(kind) }
    }
}
