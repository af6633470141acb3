//! hutch's state directory: one folder per VM with its JSON record, its lock,
//! its logs and its backend's runtime files (sockets, pid files, disks).
//!
//! ```text
//! $HUTCH_STATE_DIR            (default: $XDG_STATE_HOME/hutch, else ~/.local/state/hutch)
//!   vms/NAME/vm.json          the record (versioned JSON): what `hutch exec` reads
//!   vms/NAME/lock             flock(2) held by up/down/rm/reset/run for NAME
//!   vms/NAME/...              backend files: console.log, qemu.pid, vsock sockets
//!   images/default/           the guest image `cargo xtask image` installs
//!   images/NAME/              images made by `hutch image prepare` (QEMU)
//! ```

mod backend_state;
mod lock;
mod machine_id;
mod name;
mod pool;
mod record;

use std::path::{Path, PathBuf};

pub use backend_state::{
    Accel, BackendKind, BackendState, LimaState, MadeBy, QemuShare, QemuState, ShareSource, TartState, WorkspaceShare,
};
pub use lock::VmLock;
pub use machine_id::{BadMachineId, MachineId};
pub use name::{VmName, default_name};
pub use pool::{PoolEntry, PoolState};
pub use record::{HeavyLink, RECORD_VERSION, RoMode, VmRecord, now_unix};

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No usable state directory could be determined.
    #[error("cannot determine the state directory: set HUTCH_STATE_DIR or HOME")]
    NoHome,
    /// A VM name is not acceptable.
    #[error("invalid VM name {0:?}: use 1-48 characters from a-z, 0-9, '-' and '_', starting with a letter or digit")]
    BadName(String),
    /// No record exists for this VM.
    #[error("no VM named {0}")]
    NoSuchVm(String),
    /// The VM was never started, so its record has no agent address.
    #[error("VM {0} has not been started yet, so it has no agent address")]
    NoAddress(String),
    /// The record exists but cannot be understood.
    #[error("the record {path} is unreadable: {why}")]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What hutch was doing.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl StateError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            StateError::NoSuchVm(name) => Some(format!(
                "create it with `hutch up --name {name}`, pick another with --name (`hutch ls` lists them), or reach an agent directly with --addr"
            )),
            StateError::NoAddress(name) => Some(format!("start it with `hutch up --name {name}`")),
            _ => None,
        }
    }

    /// Wraps an I/O error with what was being done and where.
    pub fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
        move |source| StateError::Io { what, path: path.to_path_buf(), source }
    }
}

/// One entry of [`StateDir::list`]: a VM's name and its record (or why the
/// record could not be read).
pub type Listed = (VmName, Result<VmRecord, StateError>);

/// The root of hutch's state.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory from the environment (see the module docs).
    pub fn from_env() -> Result<StateDir, StateError> {
        let root = match (std::env::var_os("HUTCH_STATE_DIR"), std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
            (Some(dir), _, _) if !dir.is_empty() => PathBuf::from(dir),
            (_, Some(xdg), _) if !xdg.is_empty() => PathBuf::from(xdg).join("hutch"),
            (_, _, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".local/state/hutch"),
            _ => return Err(StateError::NoHome),
        };
        Ok(StateDir { root })
    }

    /// A state directory at `root` (tests, tools).
    pub fn at(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of VM `name` (which may not exist yet).
    pub fn vm_dir(&self, name: &VmName) -> PathBuf {
        self.root.join("vms").join(name.as_str())
    }

    /// Where `cargo xtask image` installs the default guest image.
    pub fn default_image(&self) -> PathBuf {
        self.images_dir().join("default")
    }

    /// Where installed and prepared images live, one folder per name
    /// (`hutch up --image NAME` finds them there).
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The SSH host keys hutch has pinned (`hutch agent install`, `image prepare`).
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }

    /// Creates the folder of VM `name` (mode 0700: it holds tokens and sockets).
    pub fn create_vm_dir(&self, name: &VmName) -> Result<PathBuf, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.vm_dir(name);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(StateError::io("creating", &dir))?;
        Ok(dir)
    }

    /// Reads the record of VM `name`.
    pub fn load(&self, name: &VmName) -> Result<VmRecord, StateError> {
        VmRecord::load(&self.vm_dir(name), name)
    }

    /// Every VM with a record, sorted by name. Unreadable records are returned
    /// as errors next to their name rather than hiding the others.
    pub fn list(&self) -> Result<Vec<Listed>, StateError> {
        let vms = self.root.join("vms");
        let entries = match std::fs::read_dir(&vms) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::Io { what: "listing", path: vms, source: e }),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().and_then(|n| VmName::new(n).ok()) else { continue };
            if !entry.path().join(record::RECORD_FILE).exists() {
                continue;
            }
            let record = self.load(&name);
            out.push((name, record));
        }
        out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok(out)
    }

    /// Removes the folder of VM `name` and everything in it.
    pub fn remove_vm_dir(&self, name: &VmName) -> Result<(), StateError> {
        let dir = self.vm_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io { what: "removing", path: dir, source: e }),
        }
    }
}

/// Puts the finished folder `staging` at `dest` in one rename, moving a
/// previous `dest` aside first and deleting it afterwards: readers see the
/// old folder or the new one, never a half-written one. `staging` must be on
/// the same file system (a sibling of `dest`).
pub fn replace_dir(staging: &Path, dest: &Path) -> std::io::Result<()> {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let old = dest.with_file_name(format!(".{name}.old.{}", std::process::id()));
    if dest.exists() {
        std::fs::rename(dest, &old)?;
    }
    std::fs::rename(staging, dest)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
