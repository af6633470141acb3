//! VM managers behind one trait, so lifecycle commands never care which one
//! runs a VM.
//!
//! A backend turns a [`VmSpec`] into a VM (`create`), runs and stops it
//! (`start`/`stop`), removes it (`delete`) and says what state it is in
//! (`state`). `start` fills in the record's `addr`: the transport the agent
//! answers on. Waiting for the agent is not a backend's job; the lifecycle code
//! does it the same way for every backend (see `crate::lifecycle`).

pub mod disk_size;
#[cfg(test)]
pub mod fake;
pub mod lima;
pub mod qemu;
pub mod tart;
pub mod tool;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hutch_proto::v1::WorkspaceShare;

use hutch_proto::addr::Addr;

use crate::state::{BackendKind, BackendState, StateDir, VmName, VmRecord};

/// What `hutch up`/`run` asks for.
#[derive(Clone, Debug)]
pub struct VmSpec {
    /// hutch's name for the VM.
    pub name: VmName,
    /// Base image (backend-specific: an image folder for QEMU, a VM name for Tart).
    pub image: Option<String>,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Size of the VM's disk in bytes, for images with a disk (`None`: the image's).
    pub disk_bytes: Option<u64>,
    /// Host folder to share into the guest, at the same absolute path.
    pub workspace: Option<PathBuf>,
    /// Created by `hutch run --rm`: deleted when its command ends.
    pub ephemeral: bool,
    /// Names of heavy artifact dirs to keep on VM-local disk.
    pub heavy_dirs: Vec<String>,
    /// `--ro`: `workspace` is copied into the guest, not shared.
    pub ro: Option<crate::state::RoMode>,
    /// `--unguarded-git`: `.git` is shared writable, without the host's guard.
    pub unguarded_git: bool,
    /// `--sync`: `workspace` is copied into the guest and kept in step both ways, not shared.
    pub sync: bool,
}

impl VmSpec {
    /// The folder to share into the guest: the workspace, unless `--ro`
    /// copies it in instead (then nothing of the host is shared).
    pub fn shared_workspace(&self) -> Option<&Path> {
        if self.ro.is_some() || self.sync { None } else { self.workspace.as_deref() }
    }

    /// A spec for a VM named `name` with the settings of the VM `record`
    /// describes: what `reset` makes again, and what `fork` makes more of.
    pub fn like(record: &VmRecord, name: VmName) -> VmSpec {
        VmSpec {
            name,
            image: Some(record.image.clone()),
            cpus: record.cpus,
            memory_mib: record.memory_mib,
            disk_bytes: record.disk_bytes,
            workspace: record.workspace.clone(),
            ephemeral: record.ephemeral,
            heavy_dirs: record.heavy_dirs.clone(),
            ro: record.ro,
            unguarded_git: record.unguarded_git,
            sync: record.sync,
        }
    }

    /// The first record of a VM just created from this spec, in state stopped.
    pub fn record(&self, image: String, addr: Option<Addr>, backend: BackendState) -> VmRecord {
        VmRecord {
            version: crate::state::RECORD_VERSION,
            name: self.name.clone(),
            addr,
            token_file: None,
            workspace: self.workspace.clone(),
            image,
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            disk_bytes: self.disk_bytes,
            ephemeral: self.ephemeral,
            created_unix: crate::state::now_unix(),
            started_unix: None,
            protocol: None,
            heavy_dirs: self.heavy_dirs.clone(),
            heavy_links: Vec::new(),
            created_dirs: Vec::new(),
            backend,
            ro: self.ro,
            unguarded_git: self.unguarded_git,
            sync: self.sync,
            machine_id: crate::state::MachineId::random().ok(),
            pool: None,
        }
    }
}

/// Where a guest's SSH server answers, for `hutch agent install --name` and
/// `hutch image prepare` (the only SSH hutch does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshEndpoint {
    /// Host name or address, as seen from the host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The image's usual login (e.g. `admin` on Tart's stock images), if known.
    pub user: Option<String>,
}

/// What a backend knows about one of its VMs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmState {
    /// Its processes are up (the agent may still be booting).
    Running,
    /// Created but not running.
    Stopped,
    /// The backend has no such VM any more (deleted behind hutch's back).
    Missing,
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl VmState {
    /// For `hutch ls`.
    pub fn as_str(&self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Stopped => "stopped",
            VmState::Missing => "missing",
        }
    }
}

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A tool the backend needs is not installed.
    #[error("{tool} is not installed or not in PATH")]
    MissingTool {
        /// The program.
        tool: String,
        /// How to install it.
        install: String,
    },
    /// The base image is missing or unusable.
    #[error("no usable guest image at {path}: {why}")]
    Image {
        /// Where hutch looked.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No base image was named and the backend has no default.
    #[error("no base image given: {how}")]
    NoImage {
        /// How to name one.
        how: String,
    },
    /// The backend does not support this operation or platform.
    #[error("{0}")]
    Unsupported(String),
    /// The VM did not come up.
    #[error("{0}")]
    Boot(String),
    /// The disk size asked for cannot be given (see [`disk_size`]).
    #[error("{0}")]
    DiskSize(String),
    /// A command of the VM manager failed.
    #[error("`{command}` failed: {why}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output or status.
        why: String,
    },
    /// A local operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl BackendError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackendError {
        let what = what.into();
        move |source| BackendError::Io { what, source }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            BackendError::MissingTool { install, .. } => Some(install.clone()),
            BackendError::Image { .. } => Some("build the default image with `cargo xtask image`, or pass --image DIR".into()),
            BackendError::DiskSize(_) => {
                Some("a VM's disk starts as a copy of its image's and can only grow: --disk (or `disk`) sets its size".into())
            }
            _ => None,
        }
    }
}

/// A VM manager.
pub trait Backend {
    /// Which one this is.
    fn kind(&self) -> BackendKind;

    /// Creates the VM from its base image (a copy or copy-on-write clone) and
    /// returns its first record, in state [`VmState::Stopped`].
    fn create(&self, spec: &VmSpec, dir: &Path) -> Result<VmRecord, BackendError>;

    /// Starts the VM and sets `record.addr` (and any backend state). Returns
    /// once the VM's processes run; the agent may still be booting.
    fn start(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError>;

    /// Stops the VM; stopping a stopped VM is not an error.
    fn stop(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError>;

    /// Deletes the VM's disks and backend-side existence (the state folder is
    /// removed by the caller).
    fn delete(&self, record: &VmRecord, dir: &Path) -> Result<(), BackendError>;

    /// The VM's state, asked of the backend (used off the hot path only).
    /// An error means the backend could not tell (its CLI failed): never
    /// take it for [`VmState::Missing`], which would make `up` create the VM
    /// again.
    fn state(&self, record: &VmRecord, dir: &Path) -> Result<VmState, BackendError>;

    /// Whether the guest has said its agent is listening. Until it does, the
    /// lifecycle does not try to connect (for a while): some vsock devices
    /// misbehave when connections arrive while the guest driver initialises.
    fn ready_to_connect(&self, _record: &VmRecord, _dir: &Path) -> bool {
        true
    }

    /// The last lines of the VM's console, to show when it fails to boot.
    fn console_tail(&self, dir: &Path, lines: usize) -> Option<String>;

    /// Something the user should know about how the VM runs (e.g. "TCG: KVM
    /// is unavailable"), shown once by `hutch up`.
    fn notes(&self, _record: &VmRecord) -> Vec<String> {
        Vec::new()
    }

    /// How this backend shares the workspace with the guest, for `Prepare`.
    fn workspace_share(&self, record: &VmRecord) -> Option<WorkspaceShare>;

    /// The image to use when the user names none.
    fn default_image(&self, state: &StateDir) -> Option<String>;

    /// How long the agent may take to answer after `start`.
    fn boot_timeout(&self, _record: &VmRecord) -> Duration {
        DEFAULT_BOOT_TIMEOUT
    }

    /// Called when the agent did not answer within [`Backend::boot_timeout`].
    /// Returns true if the backend restarted the VM differently (e.g. without
    /// a hardware accelerator that turned out to hang) and waiting should go on.
    fn retry_boot(&self, _record: &mut VmRecord, _dir: &Path) -> Result<bool, BackendError> {
        Ok(false)
    }

    /// Called once the agent has answered after a start.
    fn booted(&self, _record: &mut VmRecord, _dir: &Path) {}

    /// What, besides the spec itself, decides the contents of a VM this
    /// backend boots for `spec`, for a warm pool's key (`crate::warm::key`):
    /// e.g. which files the image name stands for now.
    fn pool_inputs(&self, _spec: &VmSpec) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Makes the new VMs `children` (their specs and empty folders), each
    /// with a disk that starts as this VM's is now, copy-on-write: this
    /// VM's writes from now on are its own, and so are each child's. The
    /// VM may be running (the backend takes care that what it has written
    /// so far is in the copy) or stopped. Returns the children's first
    /// records, stopped, and updates `record` (the caller saves both).
    fn fork(&self, _record: &mut VmRecord, _dir: &Path, _children: &[(VmSpec, PathBuf)]) -> Result<Vec<VmRecord>, BackendError> {
        Err(BackendError::Unsupported(format!(
            "hutch fork needs the QEMU backend (copy-on-write disk layers); {} cannot fork a VM",
            self.kind().as_str()
        )))
    }

    /// Where the running guest's SSH server answers, once it is known (None:
    /// not yet, or this backend's guests have no SSH server, as QEMU's
    /// images, which carry the agent from the start).
    fn ssh_endpoint(&self, _record: &VmRecord, _dir: &Path) -> Option<SshEndpoint> {
        None
    }
}

/// How long an agent may take to answer after a VM starts, unless the
/// backend says otherwise (software emulation boots in seconds; cloud images
/// with first-boot setup can take a minute).
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// How long an agent may take to answer after a VM starts, for backends
/// without a reason to differ: `HUTCH_BOOT_TIMEOUT` (e.g. `90`, `2m`) or
/// [`DEFAULT_BOOT_TIMEOUT`].
pub fn configured_boot_timeout() -> Duration {
    std::env::var("HUTCH_BOOT_TIMEOUT").ok().and_then(|t| crate::duration::parse(&t).ok()).unwrap_or(DEFAULT_BOOT_TIMEOUT)
}

/// The backend for `kind`.
pub fn for_kind(kind: BackendKind, state: &StateDir) -> Result<Box<dyn Backend>, BackendError> {
    match kind {
        BackendKind::Qemu => Ok(Box::new(qemu::Qemu::from_env(state))),
        BackendKind::Tart => Ok(Box::new(tart::Tart::from_env()?)),
        BackendKind::Lima => Ok(Box::new(lima::Lima::from_env()?)),
    }
}

/// Points a VM manager process's stdin at /dev/null and its stdout and stderr
/// at `log` (appended), before it is started detached from hutch.
pub fn output_to_log(cmd: &mut std::process::Command, log: &Path) -> Result<(), BackendError> {
    let out =
        std::fs::File::options().create(true).append(true).open(log).map_err(BackendError::io(format!("opening {}", log.display())))?;
    let err = out.try_clone().map_err(BackendError::io("duplicating a log descriptor"))?;
    cmd.stdin(std::process::Stdio::null()).stdout(out).stderr(err);
    Ok(())
}

/// The last `lines` lines of a text file, if it exists and is not empty.
pub fn tail_of_file(path: &Path, lines: usize) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    // The guest writes its console: read only its end, and show it escaped.
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let keep = crate::untrusted::limits::CONSOLE_TAIL_BYTES.max;
    file.seek(SeekFrom::Start(len.saturating_sub(keep))).ok()?;
    let mut text = Vec::new();
    file.take(keep).read_to_end(&mut text).ok()?;
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let tail: Vec<String> = all[start..].iter().map(|line| crate::untrusted::text::cut(line, 512)).collect();
    let tail = tail.join("\n");
    (!tail.trim().is_empty()).then_some(tail)
}
