//! The QEMU backend: hutch runs `qemu-system-*` itself (Linux hosts, CI).
//!
//! A VM is a folder in the state dir holding its own copy of the guest image
//! (and, for disk images, its copy-on-write overlay: [`disk`]), its sockets,
//! logs and pids. `start` launches vhost-device-vsock (when the
//! kernel's vhost-vsock is missing), virtiofsd for the workspace ([`virtiofs`])
//! and QEMU, detached from hutch; `stop` asks QEMU to quit over QMP, then stops
//! the daemons.

pub mod accel;
pub mod args;
pub mod disk;
pub mod image;
pub mod prepared;
pub mod process;
pub mod qmp;
pub mod virtiofs;
pub mod vsock;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hutch_proto::addr::Addr;
use hutch_proto::v1::{WorkspaceShare, workspace_share};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, SshEndpoint, VmSpec, VmState, tail_of_file};
use crate::state::{BackendKind, StateDir, VmRecord};
use accel::{Accel, Choice};
use image::GuestImage;

/// The VM's copy of its image, inside its folder.
pub(crate) const IMAGE_DIR: &str = "image";
/// QEMU's own stdout/stderr.
const QEMU_LOG: &str = "qemu.log";

/// The QEMU backend, configured from the environment.
pub struct Qemu {
    qemu: PathBuf,
    vhost_device_vsock: PathBuf,
    virtiofsd: Option<PathBuf>,
    qemu_img: PathBuf,
    accel_preference: Option<String>,
    state_root: PathBuf,
}

/// What the QEMU backend keeps in `VmRecord::backend_state`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct QemuState {
    qemu_pid: Option<u32>,
    vhost_pid: Option<u32>,
    accel: Option<Accel>,
    accel_reason: String,
    probing_kvm: bool,
    /// virtiofsd's pid, when the workspace goes over virtio-fs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    virtiofsd_pid: Option<u32>,
    /// How the workspace reaches the guest (None: no workspace, or a record
    /// from before virtio-fs, which always meant 9p).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    share: Option<virtiofs::Transport>,
    /// Disk images: the host port forwarded to the guest's SSH server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_port: Option<u16>,
}

impl QemuState {
    fn of(record: &VmRecord) -> QemuState {
        serde_json::from_value(record.backend_state.clone()).unwrap_or_default()
    }

    fn store(&self, record: &mut VmRecord) {
        record.backend_state = serde_json::to_value(self).unwrap_or_default();
    }
}

impl Qemu {
    /// Reads `HUTCH_QEMU`, `HUTCH_QEMU_IMG`, `HUTCH_VHOST_DEVICE_VSOCK`,
    /// `HUTCH_VIRTIOFSD` and `HUTCH_QEMU_ACCEL`.
    pub fn from_env(state: &StateDir) -> Qemu {
        let default_qemu = format!("qemu-system-{}", std::env::consts::ARCH);
        let qemu = std::env::var_os("HUTCH_QEMU").map_or_else(|| PathBuf::from(default_qemu), PathBuf::from);
        let vhost_device_vsock = std::env::var_os("HUTCH_VHOST_DEVICE_VSOCK")
            .map_or_else(|| find_program("vhost-device-vsock").unwrap_or_else(|| "vhost-device-vsock".into()), PathBuf::from);
        Qemu {
            qemu,
            vhost_device_vsock,
            virtiofsd: find_virtiofsd(),
            qemu_img: disk::qemu_img(),
            accel_preference: std::env::var("HUTCH_QEMU_ACCEL").ok(),
            state_root: state.root().to_path_buf(),
        }
    }

    fn launch(&self, record: &mut VmRecord, dir: &Path, choice: Choice) -> Result<(), BackendError> {
        let image = GuestImage::load(&dir.join(IMAGE_DIR))?;
        for stale in [args::QMP_SOCKET, args::CONSOLE_LOG] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        let device = if vsock::kernel_available() {
            vsock::Device::Kernel { cid: vsock::kernel_cid(&record.name, 0) }
        } else {
            vsock::start_user_space(&self.vhost_device_vsock, dir)?
        };
        let vhost_pid = match device {
            vsock::Device::UserSpace { pid } => Some(pid),
            vsock::Device::Kernel { .. } => None,
        };
        let stop_daemons = |virtiofsd_pid: Option<u32>| {
            for pid in vhost_pid.into_iter().chain(virtiofsd_pid) {
                process::terminate(pid, dir, Duration::from_secs(2));
            }
        };
        let workspace_path = record.shared_workspace().map(Path::to_path_buf);
        let share = match &workspace_path {
            Some(ws) => {
                let settled = virtiofs::Preference::from_env()
                    .and_then(|preference| virtiofs::settle(preference, self.virtiofsd.as_deref(), ws, dir))
                    .inspect_err(|_| stop_daemons(None))?;
                if let Some(notice) = &settled.notice {
                    eprintln!("hutch: {notice}");
                }
                Some((ws.as_path(), settled))
            }
            None => None,
        };
        let virtiofsd_pid = share.as_ref().and_then(|(_, settled)| settled.pid);
        let socket = dir.join(virtiofs::SOCKET);
        let workspace = share.as_ref().map(|(ws, settled)| match settled.transport {
            virtiofs::Transport::Virtiofs => args::Workspace::Virtiofs { socket: &socket },
            virtiofs::Transport::NineP => args::Workspace::NineP { path: ws },
        });
        let overlay = dir.join(disk::OVERLAY);
        let ssh_port = match image.spec.disk {
            Some(_) => Some(disk::free_port().inspect_err(|_| stop_daemons(virtiofsd_pid))?),
            None => None,
        };
        let machine = args::Machine {
            accel: choice.accel,
            cpus: record.cpus,
            memory_mib: record.memory_mib,
            image: &image,
            vm_dir: dir,
            vsock: &device,
            workspace,
            tsc_khz: if choice.accel == Accel::Tcg { accel::host_tsc_khz() } else { None },
            disk: ssh_port.map(|ssh_port| args::DiskAttachment { overlay: &overlay, ssh_port }),
        };
        let mut cmd = Command::new(&self.qemu);
        cmd.args(machine.args());
        let qemu_pid = process::spawn_detached(cmd, &dir.join(QEMU_LOG)).inspect_err(|_| stop_daemons(virtiofsd_pid))?;
        record.addr = match device {
            vsock::Device::Kernel { cid } => Addr::Vsock { cid, port: image.spec.agent_port },
            vsock::Device::UserSpace { .. } => Addr::Hvsock { path: vsock::hvsock_path(dir), port: image.spec.agent_port },
        }
        .to_string();
        let state = QemuState {
            qemu_pid: Some(qemu_pid),
            vhost_pid,
            accel: Some(choice.accel),
            accel_reason: choice.reason,
            probing_kvm: choice.probing,
            virtiofsd_pid,
            share: share.map(|(_, settled)| settled.transport),
            ssh_port,
        };
        state.store(record);
        Ok(())
    }

    /// An image folder or disk file by path, else a prepared image by name
    /// (`$state/images/NAME`).
    fn resolve_image(&self, base: &str) -> Result<PathBuf, BackendError> {
        let path = PathBuf::from(base);
        if path.exists() {
            return Ok(path);
        }
        let named = StateDir::at(&self.state_root).images_dir().join(base);
        if !base.contains('/') && !base.is_empty() && named.is_dir() {
            return Ok(named);
        }
        Err(BackendError::Image {
            path,
            why: format!("no such file or folder, and no prepared image of that name in {}", named.parent().unwrap_or(&named).display()),
        })
    }

    fn shut_down(&self, record: &mut VmRecord, dir: &Path) {
        let mut state = QemuState::of(record);
        if let Some(pid) = state.qemu_pid.take() {
            let quit = || qmp::quit(&dir.join(args::QMP_SOCKET)).is_ok() && process::wait_gone(pid, dir, Duration::from_secs(10));
            if process::is_ours(pid, dir) && !quit() {
                process::terminate(pid, dir, Duration::from_secs(5));
            }
        }
        // virtiofsd exits by itself once QEMU has closed its connection.
        for pid in [state.vhost_pid.take(), state.virtiofsd_pid.take()].into_iter().flatten() {
            process::terminate(pid, dir, Duration::from_secs(5));
        }
        virtiofs::remove_leftovers(dir);
        state.ssh_port = None;
        for socket in [args::QMP_SOCKET, vsock::VHOST_SOCKET, vsock::HVSOCK_SOCKET] {
            let _ = std::fs::remove_file(dir.join(socket));
        }
        state.store(record);
    }
}

impl Backend for Qemu {
    fn kind(&self) -> BackendKind {
        BackendKind::Qemu
    }

    fn create(&self, spec: &VmSpec, dir: &Path) -> Result<VmRecord, BackendError> {
        let base = spec.image.as_deref().ok_or_else(|| BackendError::Image { path: PathBuf::new(), why: "no image given".into() })?;
        let path = self.resolve_image(base)?;
        let image = if path.is_dir() {
            GuestImage::load(&path)?.copy_to(&dir.join(IMAGE_DIR))?
        } else {
            let boot = GuestImage::load(&StateDir::at(&self.state_root).default_image()).map_err(|e| BackendError::Image {
                path: path.clone(),
                why: format!("a disk image boots with the kernel and initramfs of the default image, which is unusable: {e}"),
            })?;
            disk::image_for_disk(&path, &boot, &dir.join(IMAGE_DIR))?
        };
        disk::create_overlay(&self.qemu_img, &image, &dir.join(disk::OVERLAY))?;
        Ok(spec.record(BackendKind::Qemu, base.to_owned(), String::new(), serde_json::Value::Null))
    }

    fn start(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError> {
        let choice = accel::choose(&self.state_root, self.accel_preference.as_deref());
        self.launch(record, dir, choice)
    }

    fn stop(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError> {
        self.shut_down(record, dir);
        Ok(())
    }

    fn delete(&self, record: &VmRecord, dir: &Path) -> Result<(), BackendError> {
        let mut record = record.clone();
        self.shut_down(&mut record, dir);
        match std::fs::remove_dir_all(dir.join(IMAGE_DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(BackendError::Io { what: "removing the VM's image".into(), source: e })
            }
            _ => Ok(()),
        }
    }

    fn state(&self, record: &VmRecord, dir: &Path) -> VmState {
        let state = QemuState::of(record);
        if state.qemu_pid.is_some_and(|pid| process::is_ours(pid, dir)) {
            VmState::Running
        } else if dir.join(IMAGE_DIR).join(image::IMAGE_FILE).exists() {
            VmState::Stopped
        } else {
            VmState::Missing
        }
    }

    fn ready_to_connect(&self, _record: &VmRecord, dir: &Path) -> bool {
        GuestImage::console_says_ready(&dir.join(args::CONSOLE_LOG))
    }

    fn console_tail(&self, dir: &Path, lines: usize) -> Option<String> {
        let console =
            tail_of_file(&dir.join(args::CONSOLE_LOG), lines).map(|t| format!("console ({}):\n{t}", dir.join(args::CONSOLE_LOG).display()));
        let qemu = tail_of_file(&dir.join(QEMU_LOG), lines).map(|t| format!("qemu ({}):\n{t}", dir.join(QEMU_LOG).display()));
        let parts: Vec<String> = [qemu, console].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }

    fn notes(&self, record: &VmRecord) -> Vec<String> {
        let state = QemuState::of(record);
        match state.accel {
            Some(Accel::Tcg) => vec![format!("running under TCG (software emulation): {}", state.accel_reason)],
            Some(Accel::Kvm) => vec!["running under KVM".to_owned()],
            None => Vec::new(),
        }
    }

    fn workspace_share(&self, record: &VmRecord) -> Option<WorkspaceShare> {
        let tag = args::WORKSPACE_TAG.to_owned();
        let kind = match QemuState::of(record).share {
            Some(virtiofs::Transport::Virtiofs) => workspace_share::Kind::VirtiofsTag(tag),
            Some(virtiofs::Transport::NineP) | None => workspace_share::Kind::NinepTag(tag),
        };
        record.shared_workspace().map(|_| WorkspaceShare { kind: Some(kind) })
    }

    fn default_image(&self, state: &StateDir) -> Option<String> {
        Some(state.default_image().display().to_string())
    }

    fn boot_timeout(&self, record: &VmRecord) -> Duration {
        if QemuState::of(record).probing_kvm { accel::KVM_PROBE_TIMEOUT } else { crate::backend::DEFAULT_BOOT_TIMEOUT }
    }

    fn retry_boot(&self, record: &mut VmRecord, dir: &Path) -> Result<bool, BackendError> {
        if !QemuState::of(record).probing_kvm {
            return Ok(false);
        }
        eprintln!("hutch: KVM did not boot the guest within {:?}; falling back to TCG (software emulation)", accel::KVM_PROBE_TIMEOUT);
        accel::remember(&self.state_root, false);
        self.shut_down(record, dir);
        let reason = format!("KVM did not boot a guest on this host (remembered in {})", accel::verdict_path(&self.state_root).display());
        self.launch(record, dir, Choice { accel: Accel::Tcg, probing: false, reason })?;
        Ok(true)
    }

    fn ssh_endpoint(&self, record: &VmRecord, dir: &Path) -> Option<SshEndpoint> {
        let state = QemuState::of(record);
        let running = state.qemu_pid.is_some_and(|pid| process::is_ours(pid, dir));
        state.ssh_port.filter(|_| running).map(|port| SshEndpoint { host: "127.0.0.1".into(), port, user: None })
    }

    fn booted(&self, record: &mut VmRecord, _dir: &Path) {
        let mut state = QemuState::of(record);
        if state.probing_kvm {
            accel::remember(&self.state_root, true);
            state.probing_kvm = false;
            state.store(record);
        }
    }
}

/// virtiofsd: `HUTCH_VIRTIOFSD` when set (even if it does not exist, so a
/// wrong path is reported rather than silently replaced), else found like
/// [`find_program`]; None when it is nowhere.
pub fn find_virtiofsd() -> Option<PathBuf> {
    match std::env::var_os("HUTCH_VIRTIOFSD") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => find_program(virtiofs::PROGRAM),
    }
}

/// A program from PATH, or where `cargo install` puts it (`$CARGO_HOME/bin`,
/// `~/.cargo/bin`), which is often not in PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    let in_cargo = || {
        let cargo_home =
            std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        cargo_home.map(|c| c.join("bin").join(name)).filter(|p| p.is_file())
    };
    in_path.or_else(in_cargo)
}
