//! The VM record (`vm.json`): everything `hutch exec` needs to reach a VM
//! without asking its VM manager, and everything lifecycle commands need to
//! find its pieces again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StateError, VmName};

/// Current record format; records from a newer hutch are refused, not misread.
pub const RECORD_VERSION: u32 = 1;

/// The record's file name inside the VM's folder.
pub const RECORD_FILE: &str = "vm.json";

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

/// How a `--ro` VM's snapshot is made (`hutch up --ro/--ro-git/--no-ignore`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoMode {
    /// `.git` is included (`--ro-git`).
    #[serde(default)]
    pub git: bool,
    /// `.gitignore`/`.hutchignore` are not honoured (`--no-ignore`).
    #[serde(default)]
    pub no_ignore: bool,
}

/// One VM as hutch knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// hutch's name for the VM.
    pub name: String,
    /// The VM manager.
    pub backend: BackendKind,
    /// Where the agent answers (`hvsock://…`, `vsock://…`, `unix://…`, `tcp://…`).
    pub addr: String,
    /// Token file for `tcp://` agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The host project shared into the guest, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// The base image it was created from.
    pub image: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// The disk size asked for (`--disk`, `disk`), for `hutch reset`; `None`: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Created by `hutch run`: deleted when its command ends.
    #[serde(default)]
    pub ephemeral: bool,
    /// Creation time (seconds since the epoch).
    pub created_unix: u64,
    /// When the running instance was started; `None` while stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix: Option<u64>,
    /// Protocol level the agent reported at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// Names of heavy artifact dirs kept on VM-local disk.
    #[serde(default)]
    pub heavy_dirs: Vec<String>,
    /// Heavy dirs that became symlinks in the host project (macOS guests),
    /// removed again by `hutch down`/`rm`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heavy_links: Vec<HeavyLink>,
    /// Mount points for heavy dirs that hutch created in the host project
    /// (they did not exist before), removed by `hutch down`/`rm` if still empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_dirs: Vec<PathBuf>,
    /// Backend-specific details (process ids, accelerator, ...).
    #[serde(default)]
    pub backend_state: serde_json::Value,
    /// The background `hutch forward` started by `hutch up --forward`,
    /// stopped by `down`/`rm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_pid: Option<u32>,

    /// `--ro`: the workspace is not shared but copied into the guest (a
    /// snapshot synced before each exec); `None` in shared mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ro: Option<RoMode>,
}

impl VmRecord {
    /// The host folder the backend shares into the guest: the workspace,
    /// unless the VM holds a `--ro` snapshot of it instead.
    pub fn shared_workspace(&self) -> Option<&Path> {
        if self.ro.is_some() { None } else { self.workspace.as_deref() }
    }
}

impl VmRecord {
    /// Reads the record in `dir`.
    pub fn load(dir: &Path, name: &VmName) -> Result<VmRecord, StateError> {
        let path = dir.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::NoSuchVm(name.to_string())),
            Err(e) => return Err(StateError::Io { what: "reading", path, source: e }),
        };
        let bad = |why: String| StateError::BadRecord { path: path.clone(), why };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let version = value.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if version > u64::from(RECORD_VERSION) {
            return Err(bad(format!("it was written by a newer hutch (format {version}; this one reads up to {RECORD_VERSION})")));
        }
        serde_json::from_value(value).map_err(|e| bad(e.to_string()))
    }

    /// Writes the record into `dir` atomically (temp file + rename), so a
    /// concurrent `hutch exec` never reads half a record.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(RECORD_FILE);
        let tmp = dir.join(format!(".{RECORD_FILE}.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| StateError::BadRecord { path: path.clone(), why: e.to_string() })?;
        std::fs::write(&tmp, text + "\n").map_err(StateError::io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(StateError::io("replacing", &path))
    }
}

/// A symlink that `Prepare` put in the host project in place of a heavy dir.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeavyLink {
    /// The link's path (in the host project).
    pub path: PathBuf,
    /// Where it points (VM-local storage).
    pub target: PathBuf,
}

/// Seconds since the epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VmRecord {
        VmRecord {
            version: RECORD_VERSION,
            name: "web".into(),
            backend: BackendKind::Qemu,
            addr: "hvsock:///s/vsock.sock:8080".into(),
            token_file: None,
            workspace: Some("/home/me/web".into()),
            image: "/img".into(),
            cpus: 2,
            memory_mib: 1024,
            disk_bytes: Some(40 << 30),
            ephemeral: false,
            created_unix: 1,
            started_unix: Some(2),
            protocol: Some(1),
            heavy_dirs: vec!["node_modules".into()],
            heavy_links: Vec::new(),
            created_dirs: vec!["/home/me/web/node_modules".into()],
            backend_state: serde_json::json!({ "qemu_pid": 42 }),
            forward_pid: None,
            ro: Some(RoMode { git: true, no_ignore: false }),
        }
    }

    #[test]
    fn round_trips_and_refuses_newer_formats() {
        let dir = tempfile::tempdir().unwrap();
        let name = VmName::new("web").unwrap();
        sample().save(dir.path()).unwrap();
        assert_eq!(VmRecord::load(dir.path(), &name).unwrap(), sample());

        let mut newer = serde_json::to_value(sample()).unwrap();
        newer["version"] = serde_json::json!(RECORD_VERSION + 1);
        std::fs::write(dir.path().join(RECORD_FILE), newer.to_string()).unwrap();
        let err = VmRecord::load(dir.path(), &name).unwrap_err().to_string();
        assert!(err.contains("newer hutch"), "{err}");

        std::fs::remove_file(dir.path().join(RECORD_FILE)).unwrap();
        assert!(matches!(VmRecord::load(dir.path(), &name), Err(StateError::NoSuchVm(_))));
    }
}
