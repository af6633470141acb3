//! How the guest reaches the workspace the host shares, as the backend set it
//! up. The agent uses this to make the workspace appear at the host's absolute
//! path; the backend only records it (in `VmRecord::backend_state`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where macOS guests find `tart run --dir` shares.
pub const TART_MACOS_SHARES: &str = "/Volumes/My Shared Files";

/// The virtiofs tag under which Linux guests of Tart find every `--dir` share
/// (each share is a subfolder named after it).
pub const TART_VIRTIOFS_TAG: &str = "com.apple.virtio-fs.automount";

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
    /// [`TART_VIRTIOFS_TAG`] and find it in subfolder NAME.
    TartDir {
        /// The share's name.
        name: String,
        /// Shared read-only (`:ro`).
        read_only: bool,
    },
}

impl WorkspaceShare {
    /// Where a macOS guest finds the share, when it is not already at the host's path.
    pub fn macos_guest_path(&self) -> Option<PathBuf> {
        match &self.source {
            ShareSource::SamePath => None,
            ShareSource::TartDir { name, .. } => Some(PathBuf::from(TART_MACOS_SHARES).join(name)),
        }
    }

    /// The virtiofs tag a Linux guest mounts, and the subfolder of it that is
    /// the share, when it is not already at the host's path.
    pub fn linux_virtiofs(&self) -> Option<(&'static str, &str)> {
        match &self.source {
            ShareSource::SamePath => None,
            ShareSource::TartDir { name, .. } => Some((TART_VIRTIOFS_TAG, name.as_str())),
        }
    }
}
