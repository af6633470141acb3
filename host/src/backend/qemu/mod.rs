//! The QEMU backend: hutch runs `qemu-system-*` itself (Linux hosts, CI).
//!
//! A VM is a folder in the state dir holding its own copy of the guest image
//! (and, for disk images, its copy-on-write overlay: [`disk`]), its sockets,
//! logs and pids. `start` launches vhost-device-vsock (when the kernel's
//! vhost-vsock is missing), virtiofsd for the workspace ([`virtiofs`]) and
//! QEMU as daemons (`crate::daemon`: detached, found again by the lock on
//! their logs); `stop` presses the power button of a VM whose disk runs
//! hutch's init (it flushes its disk and powers off) or asks QEMU to quit over
//! QMP, then stops the other daemons. `delete` always quits at once: the disk
//! goes anyway.

pub mod accel;
pub mod args;
pub mod disk;
pub mod helper;
pub mod image;
pub mod layers;
pub mod qmp;
pub mod saved_image;
pub mod virtiofs;
pub mod vsock;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hutch_proto::addr::Addr;
use hutch_proto::v1::{WorkspaceShare, workspace_share};

use crate::backend::{Backend, BackendError, SshEndpoint, VmSpec, VmState, tail_of_file};
use crate::daemon::Daemon;
use crate::state::{BackendKind, BackendState, MachineId, QemuShare, QemuState, StateDir, VmRecord};
use accel::{Accel, Choice};
use image::{GuestImage, Init};

/// The VM's copy of its image, inside its folder.
pub(crate) const IMAGE_DIR: &str = "image";
/// QEMU as a daemon of the VM: its stdout/stderr go to `qemu.log`.
fn qemu_daemon(dir: &Path) -> Daemon {
    Daemon::new(dir, "qemu")
}
/// How long a guest with hutch's init gets to power off after its power
/// button is pressed (it takes about a second under TCG; its processes get 3 s).
const POWERDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// The QEMU backend, configured from the environment.
pub struct Qemu {
    qemu: PathBuf,
    vhost_device_vsock: PathBuf,
    virtiofsd: Option<PathBuf>,
    qemu_img: PathBuf,
    accel_preference: Option<String>,
    state_root: PathBuf,
}

/// This backend's part of a record (a record of another backend never
/// reaches it: `backend::for_kind` picks the backend by the record's tag).
fn qemu_state(record: &VmRecord) -> QemuState {
    match &record.backend {
        BackendState::Qemu(state) => state.clone(),
        _ => QemuState::default(),
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
            vsock::Device::Kernel { cid: vsock::kernel_cid(record.name.as_str(), 0) }
        } else {
            vsock::start_user_space(&self.vhost_device_vsock, dir)?
        };
        let stop_daemons = || {
            vsock::daemon(dir).terminate(Duration::from_secs(2));
            virtiofs::daemon(dir).terminate(Duration::from_secs(2));
        };
        let workspace_path = record.shared_workspace().map(Path::to_path_buf);
        let share = match &workspace_path {
            Some(ws) => Some(virtiofs::settle_from_env(self.virtiofsd.as_deref(), ws, dir).inspect_err(|_| stop_daemons())?),
            None => None,
        };
        let socket = dir.join(virtiofs::SOCKET);
        let workspace = workspace_path.as_deref().zip(share).map(|(path, share)| match share {
            QemuShare::Virtiofs => args::Workspace::Virtiofs { socket: &socket },
            QemuShare::NineP => args::Workspace::NineP { path },
        });
        let overlay = dir.join(layers::active(qemu_state(record).overlay.as_deref()));
        let hutch_init = image.spec.init == Init::Hutch;
        // An image's own init (systemd) runs sshd, reached through a forwarded port.
        let ssh_port = match image.spec.disk {
            Some(_) if !hutch_init => Some(disk::free_port().inspect_err(|_| stop_daemons())?),
            _ => None,
        };
        // hutch's init gives the guest's user the host user's ids (root's: commands run as root).
        let commands_as_root = qemu_state(record).commands_as_root;
        let machine_id = match &record.machine_id {
            Some(id) => id.clone(),
            None => MachineId::random().map_err(|e| BackendError::Boot(format!("no randomness for the VM's machine id: {e}")))?,
        };
        record.machine_id = Some(machine_id.clone());
        let cmdline_extra = cmdline_extra(hutch_init, commands_as_root, image.spec.disk.is_some(), &machine_id);
        let machine = args::Machine {
            accel: choice.accel,
            cpus: record.cpus,
            memory_mib: record.memory_mib,
            image: &image,
            vm_dir: dir,
            vsock: &device,
            workspace,
            tsc_khz: if choice.accel == Accel::Tcg { accel::host_tsc_khz() } else { None },
            disk: image.spec.disk.as_ref().map(|_| args::DiskAttachment { overlay: &overlay, ssh_port }),
            cmdline_extra,
        };
        // QEMU serves 9p itself: then it runs in the git guard's namespace.
        let mut cmd = match share {
            Some(QemuShare::NineP) => crate::git::namespace::command(&self.qemu, dir).map_err(|e| {
                stop_daemons();
                BackendError::Boot(e.to_string())
            })?,
            _ => Command::new(&self.qemu),
        };
        cmd.args(machine.args());
        if let Err(e) = qemu_daemon(dir).spawn(cmd) {
            stop_daemons();
            return Err(helper::daemon_error(e, INSTALL));
        }
        record.addr = match device {
            vsock::Device::Kernel { cid } => Addr::Vsock { cid, port: image.spec.agent_port },
            vsock::Device::UserSpace => Addr::Hvsock { path: vsock::hvsock_path(dir), port: image.spec.agent_port },
        }
        .into();
        let overlay = qemu_state(record).overlay;
        let state = QemuState {
            accel: Some(choice.accel),
            accel_reason: choice.reason,
            probing_kvm: choice.probing,
            ssh_port,
            share,
            commands_as_root,
            overlay,
        };
        record.backend = BackendState::Qemu(state);
        Ok(())
    }

    /// Creates a VM as [`Backend::create`] does, a bare disk file booting
    /// with `init` (`hutch image prepare --init hutch` boots one with
    /// hutch's init; image folders say themselves which init they boot).
    pub fn create_booting(&self, spec: &VmSpec, dir: &Path, init: Init) -> Result<VmRecord, BackendError> {
        let base = spec.image.as_deref().ok_or_else(|| BackendError::Image { path: PathBuf::new(), why: "no image given".into() })?;
        let path = self.resolve_image(base)?;
        let image = if path.is_dir() {
            GuestImage::load(&path)?.copy_to(&dir.join(IMAGE_DIR))?
        } else {
            let boot = GuestImage::load(&StateDir::at(&self.state_root).default_image()).map_err(|e| BackendError::Image {
                path: path.clone(),
                why: format!("a disk image boots with the kernel and initramfs of the default image, which is unusable: {e}"),
            })?;
            disk::image_for_disk(&path, &boot, &dir.join(IMAGE_DIR), init)?
        };
        disk::create_overlay(&self.qemu_img, &image, &dir.join(disk::OVERLAY), spec.disk_bytes)?;
        Ok(spec.record(base.to_owned(), None, BackendState::Qemu(QemuState::default())))
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

    /// Stops the VM's processes, as `how` says.
    fn shut_down(&self, record: &mut VmRecord, dir: &Path, how: ShutDown) {
        let mut state = qemu_state(record);
        let qemu = qemu_daemon(dir);
        let qmp = dir.join(args::QMP_SOCKET);
        let powers_off = || {
            let image = GuestImage::load(&dir.join(IMAGE_DIR));
            image.is_ok_and(|i| i.spec.disk.is_some() && i.spec.init == Init::Hutch)
                && qmp::system_powerdown(&qmp).is_ok()
                && qemu.wait_exit(POWERDOWN_TIMEOUT)
        };
        let quit = || qmp::quit(&qmp).is_ok() && qemu.wait_exit(Duration::from_secs(10));
        match how {
            // Nothing QEMU would still write is kept (a warm `run --rm`
            // waits for this).
            ShutDown::Discard => {
                vsock::daemon(dir).tell_to_stop();
                virtiofs::daemon(dir).tell_to_stop();
                qemu.kill();
            }
            _ if !qemu.running() => {}
            ShutDown::PowerOff if powers_off() => {}
            _ if quit() => {}
            _ => qemu.terminate(Duration::from_secs(5)),
        }
        vsock::daemon(dir).terminate(Duration::from_secs(5));
        // virtiofsd exits by itself once QEMU has closed its connection.
        virtiofs::daemon(dir).terminate(Duration::from_secs(5));
        virtiofs::remove_leftovers(dir);
        state.ssh_port = None;
        for socket in [args::QMP_SOCKET, vsock::VHOST_SOCKET, vsock::HVSOCK_SOCKET] {
            let _ = std::fs::remove_file(dir.join(socket));
        }
        record.backend = BackendState::Qemu(state);
    }
}

impl Backend for Qemu {
    fn kind(&self) -> BackendKind {
        BackendKind::Qemu
    }

    fn create(&self, spec: &VmSpec, dir: &Path) -> Result<VmRecord, BackendError> {
        self.create_booting(spec, dir, Init::Disk)
    }

    fn start(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError> {
        let choice = accel::choose(&self.state_root, self.accel_preference.as_deref());
        self.launch(record, dir, choice)
    }

    fn stop(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError> {
        self.shut_down(record, dir, ShutDown::PowerOff);
        Ok(())
    }

    fn delete(&self, record: &VmRecord, dir: &Path) -> Result<(), BackendError> {
        let mut record = record.clone();
        self.shut_down(&mut record, dir, ShutDown::Discard);
        layers::remove_all(dir);
        match std::fs::remove_dir_all(dir.join(IMAGE_DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(BackendError::Io { what: "removing the VM's image".into(), source: e })
            }
            _ => Ok(()),
        }
    }

    fn state(&self, _record: &VmRecord, dir: &Path) -> Result<VmState, BackendError> {
        Ok(if qemu_daemon(dir).running() {
            VmState::Running
        } else if dir.join(IMAGE_DIR).join(image::IMAGE_FILE).exists() {
            VmState::Stopped
        } else {
            VmState::Missing
        })
    }

    fn ready_to_connect(&self, _record: &VmRecord, dir: &Path) -> bool {
        GuestImage::console_says_ready(&dir.join(args::CONSOLE_LOG))
    }

    fn console_tail(&self, dir: &Path, lines: usize) -> Option<String> {
        let console =
            tail_of_file(&dir.join(args::CONSOLE_LOG), lines).map(|t| format!("console ({}):\n{t}", dir.join(args::CONSOLE_LOG).display()));
        let log = qemu_daemon(dir).log().to_path_buf();
        let qemu = tail_of_file(&log, lines).map(|t| format!("qemu ({}):\n{t}", log.display()));
        let parts: Vec<String> = [qemu, console].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }

    fn notes(&self, record: &VmRecord) -> Vec<String> {
        let state = qemu_state(record);
        match state.accel {
            Some(Accel::Tcg) => vec![format!("running under TCG (software emulation): {}", state.accel_reason)],
            Some(Accel::Kvm) => vec!["running under KVM".to_owned()],
            None => Vec::new(),
        }
    }

    fn workspace_share(&self, record: &VmRecord) -> Option<WorkspaceShare> {
        let tag = args::WORKSPACE_TAG.to_owned();
        let kind = match qemu_state(record).share {
            Some(QemuShare::Virtiofs) => workspace_share::Kind::VirtiofsTag(tag),
            Some(QemuShare::NineP) | None => workspace_share::Kind::NinepTag(tag),
        };
        record.shared_workspace().map(|_| WorkspaceShare { kind: Some(kind) })
    }

    fn default_image(&self, state: &StateDir) -> Option<String> {
        Some(state.default_image().display().to_string())
    }

    fn boot_timeout(&self, record: &VmRecord) -> Duration {
        if qemu_state(record).probing_kvm { accel::KVM_PROBE_TIMEOUT } else { crate::backend::DEFAULT_BOOT_TIMEOUT }
    }

    fn retry_boot(&self, record: &mut VmRecord, dir: &Path) -> Result<bool, BackendError> {
        if !qemu_state(record).probing_kvm {
            return Ok(false);
        }
        eprintln!("hutch: KVM did not boot the guest within {:?}; falling back to TCG (software emulation)", accel::KVM_PROBE_TIMEOUT);
        accel::remember(&self.state_root, false);
        self.shut_down(record, dir, ShutDown::Quit);
        let reason = format!("KVM did not boot a guest on this host (remembered in {})", accel::verdict_path(&self.state_root).display());
        self.launch(record, dir, Choice { accel: Accel::Tcg, probing: false, reason })?;
        Ok(true)
    }

    fn ssh_endpoint(&self, record: &VmRecord, dir: &Path) -> Option<SshEndpoint> {
        let state = qemu_state(record);
        state.ssh_port.filter(|_| qemu_daemon(dir).running()).map(|port| SshEndpoint { host: "127.0.0.1".into(), port, user: None })
    }

    fn pool_inputs(&self, spec: &VmSpec) -> serde_json::Value {
        let image = spec.image.as_deref().map(|base| match self.resolve_image(base) {
            Ok(path) if path.is_dir() => image::fingerprint(&path),
            // A bare disk boots with the default image's kernel and initramfs.
            Ok(path) => serde_json::json!({
                "disk": image::file_identity(&path),
                "boot": image::fingerprint(&StateDir::at(&self.state_root).default_image()),
            }),
            Err(e) => serde_json::json!({ "unusable": e.to_string() }),
        });
        serde_json::json!({
            "image": image,
            "share": std::env::var("HUTCH_QEMU_SHARE").unwrap_or_default(),
            "accel": self.accel_preference,
            "ids": [nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw()],
        })
    }

    fn fork(&self, record: &mut VmRecord, dir: &Path, children: &[(VmSpec, PathBuf)]) -> Result<Vec<VmRecord>, BackendError> {
        let image = GuestImage::load(&dir.join(IMAGE_DIR))?;
        if image.spec.disk.is_none() {
            return Err(BackendError::Unsupported(format!(
                "{} has no disk (its image runs in RAM), so there is nothing to fork: fork a VM of a disk image, such as the default one",
                record.name
            )));
        }
        let mut state = qemu_state(record);
        let frozen = layers::active(state.overlay.as_deref()).to_owned();
        let qmp = dir.join(args::QMP_SOCKET);
        let running = qemu_daemon(dir).running();
        state.overlay = Some(layers::freeze(&self.qemu_img, dir, &frozen, running.then_some(qmp.as_path()))?);
        record.backend = BackendState::Qemu(state);
        children
            .iter()
            .map(|(spec, child_dir)| {
                let overlay = layers::branch(&self.qemu_img, dir, &frozen, child_dir)?;
                Ok(spec.record(record.image.clone(), None, BackendState::Qemu(QemuState { overlay: Some(overlay), ..Default::default() })))
            })
            .collect()
    }

    fn booted(&self, record: &mut VmRecord, _dir: &Path) {
        let mut state = qemu_state(record);
        if state.probing_kvm {
            accel::remember(&self.state_root, true);
            state.probing_kvm = false;
            record.backend = BackendState::Qemu(state);
        }
    }
}

/// What hutch appends to an image's kernel command line: the VM's machine
/// id, for the guest's init to write into `/etc/machine-id` (hutch's init,
/// and the minimal image's `rc.hutch`) or to use in its place (systemd's
/// `systemd.machine_id=`, for disk images with their own init); and, for
/// hutch's init, the host user's ids, which it gives the guest's user.
fn cmdline_extra(hutch_init: bool, commands_as_root: bool, disk: bool, machine_id: &MachineId) -> String {
    let mut extra = format!("hutch.machine_id={machine_id}");
    if hutch_init {
        let (uid, gid) = if commands_as_root { (0, 0) } else { (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw()) };
        extra.push_str(&format!(" hutch.uid={uid} hutch.gid={gid}"));
    } else if disk {
        extra.push_str(&format!(" systemd.machine_id={machine_id}"));
    }
    extra
}

/// How [`Qemu::shut_down`] stops a VM.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ShutDown {
    /// A guest running hutch's init first flushes its disk and powers off
    /// (`hutch down`: the disk is kept); else as [`ShutDown::Quit`].
    PowerOff,
    /// QEMU is asked to quit, so its own writes reach the disk, which is
    /// used again (a boot retried without KVM).
    Quit,
    /// QEMU is killed at once: the VM and its disk are being deleted.
    Discard,
}

/// How to get QEMU.
const INSTALL: &str = "install QEMU (Debian/Ubuntu: `apt-get install qemu-system-x86`), or set HUTCH_QEMU to its path";

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
