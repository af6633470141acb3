//! What each backend keeps in a VM's record (`backend_state` in `vm.json`),
//! as one enum tagged by the record's `backend` field: the QEMU backend can
//! only ever be handed QEMU state, and a field that does not parse makes the
//! record unreadable (an error naming the file) instead of silently losing,
//! say, the accelerator.
//!
//! These types live in `state` rather than beside each backend so that the
//! record does not import `backend` (which imports `state`).

use std::path::PathBuf;

use hutch_proto::v1;
use hutch_proto::v1::workspace_share::Kind;
use serde::{Deserialize, Serialize};

/// Which VM manager runs a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// qemu-system-* run directly by hutch (Linux hosts).
    Qemu,
    /// Tart (macOS hosts, Apple silicon).
    Tart,
    /// Lima (macOS and Linux hosts).
    Lima,
}

impl BackendKind {
    /// The name used on the command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Qemu => "qemu",
            BackendKind::Tart => "tart",
            BackendKind::Lima => "lima",
        }
    }
}

/// A backend's own part of a VM record, tagged with the backend's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", content = "backend_state", rename_all = "lowercase")]
pub enum BackendState {
    /// The QEMU backend's.
    Qemu(QemuState),
    /// The Tart backend's.
    Tart(TartState),
    /// The Lima backend's.
    Lima(LimaState),
}

impl BackendState {
    /// Which backend runs the VM.
    pub fn kind(&self) -> BackendKind {
        match self {
            BackendState::Qemu(_) => BackendKind::Qemu,
            BackendState::Tart(_) => BackendKind::Tart,
            BackendState::Lima(_) => BackendKind::Lima,
        }
    }
}

/// What the QEMU backend keeps: how the running instance was started. (Its
/// processes' pids are the daemons' own business: see `crate::daemon`;
/// records from before keep `qemu_pid`/`vhost_pid` keys, which are ignored.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QemuState {
    /// The accelerator of the running (or last) instance.
    pub accel: Option<Accel>,
    /// Why that accelerator (shown by `hutch up`).
    pub accel_reason: String,
    /// The first KVM boot on this host, with a short timeout (see `qemu::accel`).
    pub probing_kvm: bool,
    /// Disk images: the host port forwarded to the guest's SSH server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<u16>,
    /// How the workspace reaches the guest (None: no workspace, or a record
    /// from before virtio-fs, which always meant 9p).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<QemuShare>,
    /// Under hutch's init, commands run as root instead of the image's user
    /// with the host user's ids: the VM that `hutch image prepare --init
    /// hutch` boots, whose setup runs as root as on every other path.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub commands_as_root: bool,
    /// Disk images: the overlay the VM writes, once a fork froze its first
    /// one (`None`: `disk.qcow2`; see `backend::qemu::layers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
}

/// How the QEMU backend shares the workspace: what QEMU was given is what
/// the agent's `Prepare` must mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QemuShare {
    /// virtio-fs, served by virtiofsd.
    #[serde(rename = "virtiofs")]
    Virtiofs,
    /// QEMU's own virtio-9p.
    #[serde(rename = "9p")]
    NineP,
}

/// The accelerator QEMU runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation (slow, works everywhere).
    Tcg,
}

impl Accel {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the Tart backend keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TartState {
    /// The shared workspace, for the agent to mount at the host's path.
    pub share: Option<WorkspaceShare>,
}

/// What the Lima backend keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimaState {
    /// How the instance was made.
    pub made_by: MadeBy,
    /// The shared workspace (Lima mounts it at the host's path itself).
    pub share: Option<WorkspaceShare>,
}

/// How a Lima instance was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MadeBy {
    /// `limactl create` from a template hutch wrote.
    #[default]
    Create,
    /// `limactl clone` of an existing instance.
    Clone,
}

/// The shared workspace and how the guest sees it, as the backend set it up.
/// The agent uses this to make the workspace appear at the host's absolute
/// path.
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
