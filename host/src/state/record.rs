//! The VM record (`vm.json`): everything `hutch exec` needs to reach a VM
//! without asking its VM manager, and everything lifecycle commands need to
//! find its pieces again.

use std::path::{Path, PathBuf};

use hutch_proto::addr::Addr;
use serde::{Deserialize, Serialize};

use super::{BackendKind, BackendState, MachineId, PoolEntry, StateError, VmName};

/// Current record format; records from a newer hutch are refused, not misread.
pub const RECORD_VERSION: u32 = 1;

/// The record's file name inside the VM's folder.
pub const RECORD_FILE: &str = "vm.json";

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
    pub name: VmName,
    /// Where the agent answers (`hvsock://…`, `vsock://…`, `unix://…`,
    /// `tcp://…`); `None` until the backend knows (an empty string on disk).
    #[serde(with = "addr_text")]
    pub addr: Option<Addr>,
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
    /// The VM manager and what it keeps (`backend` and `backend_state` on
    /// disk).
    #[serde(flatten)]
    pub backend: BackendState,
    /// `--ro`: the workspace is not shared but copied into the guest (a
    /// snapshot synced before each exec); `None` in shared mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ro: Option<RoMode>,
    /// `--unguarded-git`: its `.git` is shared writable, without the host's
    /// guard (`crate::git`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unguarded_git: bool,
    /// `--sync`: the workspace is not shared but copied into the guest and
    /// kept in step both ways by the VM's sync process.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync: bool,
    /// The guest's `/etc/machine-id` (32 lowercase hex digits), made when
    /// the VM is created, so each VM is a machine of its own: throw-away,
    /// warm and forked ones too. `None` in records from before it existed
    /// (the backend gives the VM one at its next start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<MachineId>,
    /// A VM of a warm pool (`hutch warm`): booted and prepared for one
    /// project and settings, waiting for a `hutch run --rm` to take it.
    /// `None` for every other VM, and for one a run has taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolEntry>,
}

impl VmRecord {
    /// Which VM manager runs the VM.
    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// Where the agent answers; an error for a VM that never started.
    pub fn agent_addr(&self) -> Result<&Addr, StateError> {
        self.addr.as_ref().ok_or_else(|| StateError::NoAddress(self.name.to_string()))
    }

    /// The address as shown to people (empty while unknown).
    pub fn addr_text(&self) -> String {
        self.addr.as_ref().map(ToString::to_string).unwrap_or_default()
    }

    /// The host folder the backend shares into the guest: the workspace,
    /// unless the VM holds a `--ro` snapshot of it instead.
    pub fn shared_workspace(&self) -> Option<&Path> {
        if self.ro.is_some() || self.sync { None } else { self.workspace.as_deref() }
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
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // A VM never started has no backend state yet (null, or no key in
        // hand-written records): the backend's defaults.
        if let Some(fields) = value.as_object_mut()
            && fields.get("backend_state").is_none_or(serde_json::Value::is_null)
        {
            fields.insert("backend_state".into(), serde_json::json!({}));
        }
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

/// `Option<Addr>` as the address text, empty for `None` (the format since
/// version 1).
mod addr_text {
    use hutch_proto::addr::Addr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<Addr>, serializer: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => serializer.collect_str(addr),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Addr>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() { Ok(None) } else { text.parse().map(Some).map_err(serde::de::Error::custom) }
    }
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
            name: VmName::new("web").unwrap(),
            addr: Some("hvsock:///s/vsock.sock:8080".parse().unwrap()),
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
            backend: BackendState::Qemu(crate::state::QemuState { accel: Some(crate::state::Accel::Kvm), ..Default::default() }),
            ro: Some(RoMode { git: true, no_ignore: false }),
            unguarded_git: false,
            sync: false,
            machine_id: Some(MachineId::parse("0123456789abcdef0123456789abcdef").unwrap()),
            pool: Some(PoolEntry { key: "k".into(), project: "p-1".into(), state: crate::state::PoolState::Ready }),
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

    /// Loads `json` as the record of VM `web`.
    fn load(json: &str) -> Result<VmRecord, StateError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RECORD_FILE), json).unwrap();
        VmRecord::load(dir.path(), &VmName::new("web").unwrap())
    }

    // Records exactly as the hutch before typed records wrote them (one per
    // backend, started and not): they must load, field for field.

    #[test]
    fn loads_a_running_qemu_record_of_the_first_format() {
        let record = load(
            r#"{"version":1,"name":"web","backend":"qemu","addr":"hvsock:///s/vms/web/vsock.sock:8080",
            "workspace":"/home/me/web","image":"/s/images/default","cpus":2,"memory_mib":1024,"ephemeral":false,
            "created_unix":1700000000,"started_unix":1700000100,"protocol":1,"heavy_dirs":["node_modules","target"],
            "backend_state":{"qemu_pid":4242,"vhost_pid":4241,"accel":"tcg","accel_reason":"KVM is unavailable (/dev/kvm: No such file or directory)","probing_kvm":false,"ssh_port":40022},
            "forward_pid":4300}"#,
        )
        .unwrap();
        assert_eq!(record.name.as_str(), "web");
        assert_eq!(record.kind(), BackendKind::Qemu);
        assert_eq!(record.addr, Some(Addr::Hvsock { path: "/s/vms/web/vsock.sock".into(), port: 8080 }));
        let BackendState::Qemu(qemu) = &record.backend else { panic!("not QEMU: {record:?}") };
        // Its pids are the daemons' business now (crate::daemon): ignored.
        assert_eq!((qemu.accel, qemu.probing_kvm, qemu.ssh_port), (Some(crate::state::Accel::Tcg), false, Some(40022)));
        assert!(qemu.accel_reason.starts_with("KVM is unavailable"));
        assert_eq!((record.heavy_dirs.len(), record.started_unix), (2, Some(1700000100)));
    }

    #[test]
    fn loads_a_created_qemu_record_of_the_first_format() {
        let record = load(
            r#"{"version":1,"name":"web","backend":"qemu","addr":"","image":"/img","cpus":1,"memory_mib":512,
            "ephemeral":true,"created_unix":1,"heavy_dirs":[],"backend_state":null,"ro":{"git":true,"no_ignore":false}}"#,
        )
        .unwrap();
        assert_eq!((record.addr.as_ref(), record.ephemeral, record.ro), (None, true, Some(RoMode { git: true, no_ignore: false })));
        assert_eq!(record.backend, BackendState::Qemu(crate::state::QemuState::default()));
        assert!(matches!(record.agent_addr(), Err(StateError::NoAddress(_))));
    }

    #[test]
    fn loads_tart_records_of_the_first_format() {
        let record = load(
            r#"{"version":1,"name":"web","backend":"tart","addr":"unix:///Users/me/.tart/vms/web/control.sock",
            "workspace":"/Users/me/web","image":"base","cpus":4,"memory_mib":4096,"ephemeral":false,"created_unix":1,
            "started_unix":2,"protocol":1,"heavy_dirs":["node_modules"],
            "heavy_links":[{"path":"/Users/me/web/node_modules","target":"/var/lib/hutch/local/node_modules"}],
            "backend_state":{"share":{"host_path":"/Users/me/web","source":{"kind":"tart_dir","name":"workspace","read_only":false}},"run_pid":77}}"#,
        )
        .unwrap();
        let BackendState::Tart(tart) = &record.backend else { panic!("not Tart: {record:?}") };
        let share = tart.share.as_ref().unwrap();
        assert_eq!(share.source, crate::state::ShareSource::TartDir { name: "workspace".into(), read_only: false });
        assert_eq!((share.host_path.to_str(), record.heavy_links.len()), (Some("/Users/me/web"), 1));

        // The TCP fallback: an address and token file, nothing shared.
        let record = load(
            r#"{"version":1,"name":"web","backend":"tart","addr":"tcp://192.168.64.5:8080","token_file":"/Users/me/token",
            "image":"base","cpus":4,"memory_mib":4096,"ephemeral":false,"created_unix":1,"heavy_dirs":[],
            "backend_state":{"share":null}}"#,
        )
        .unwrap();
        assert_eq!(record.addr, Some(Addr::Tcp { host: "192.168.64.5".into(), port: 8080 }));
        assert_eq!(record.backend, BackendState::Tart(crate::state::TartState::default()));
    }

    #[test]
    fn loads_lima_records_of_the_first_format() {
        for (made_by, expected) in [("create", crate::state::MadeBy::Create), ("clone", crate::state::MadeBy::Clone)] {
            let record = load(&format!(
                r#"{{"version":1,"name":"web","backend":"lima","addr":"unix:///Users/me/.lima/web/sock/hutch.sock",
                "workspace":"/Users/me/web","image":"template://default","cpus":2,"memory_mib":1024,"ephemeral":false,
                "created_unix":1,"heavy_dirs":[],"backend_state":{{"made_by":"{made_by}","share":{{"host_path":"/Users/me/web","source":{{"kind":"same_path"}}}}}}}}"#
            ))
            .unwrap();
            let BackendState::Lima(lima) = &record.backend else { panic!("not Lima: {record:?}") };
            assert_eq!(lima.made_by, expected);
            assert_eq!(lima.share.as_ref().map(|s| s.source.clone()), Some(crate::state::ShareSource::SamePath));
        }
    }

    #[test]
    fn a_corrupt_backend_state_or_address_is_an_error_not_a_default() {
        let base = r#""version":1,"name":"web","image":"/img","cpus":1,"memory_mib":512,"created_unix":1"#;
        for bad in [
            r#""backend":"qemu","addr":"","backend_state":{"accel":"warp","ssh_port":"twenty-two"}"#,
            r#""backend":"lima","addr":"","backend_state":{"made_by":"magic"}"#,
            r#""backend":"qemu","addr":"carrier-pigeon://x","backend_state":{}"#,
            r#""backend":"vmware","addr":"","backend_state":{}"#,
        ] {
            let err = load(&format!("{{{base},{bad}}}")).unwrap_err();
            assert!(matches!(err, StateError::BadRecord { .. }), "{bad}: {err}");
        }
        let err = load(
            r#"{"version":1,"name":"Not/Valid","backend":"qemu","addr":"","image":"/img","cpus":1,"memory_mib":512,"created_unix":1}"#,
        )
        .unwrap_err();
        assert!(matches!(err, StateError::BadRecord { .. }), "{err}");
    }
}
