//! Checks of this machine: state dir, records, locks, configuration, and the
//! QEMU backend's tools, accelerator and image.

use std::process::Command;

use crate::backend::qemu::{self, accel, image::GuestImage, virtiofs};
use crate::backend::{self, VmState};
use crate::config::Config;
use crate::state::{BackendKind, StateDir};

use super::Check;

/// Every host check.
pub fn checks(state: &StateDir) -> Vec<Check> {
    let mut out = vec![state_dir(state)];
    out.extend(records(state));
    let cwd = std::env::current_dir().unwrap_or_default();
    let backend = match Config::load(&cwd) {
        Ok(config) => {
            let files: Vec<String> = config.files.iter().map(|f| f.display().to_string()).collect();
            out.push(Check::ok("configuration", if files.is_empty() { "no files (defaults)".into() } else { files.join(", ") }));
            config.backend.value
        }
        Err(e) => {
            out.push(Check::fail("configuration", e.to_string(), "fix the file; `hutch config` shows the configuration in force"));
            BackendKind::Qemu
        }
    };
    if backend == BackendKind::Qemu {
        out.extend(qemu(state));
    }
    out
}

fn state_dir(state: &StateDir) -> Check {
    let root = state.root();
    let probe = root.join(format!(".doctor.{}", std::process::id()));
    let writable = std::fs::create_dir_all(root).and_then(|()| std::fs::write(&probe, b"")).map(|()| std::fs::remove_file(&probe));
    match writable {
        Ok(_) => Check::ok("state dir", root.display().to_string()),
        Err(e) => Check::fail("state dir", format!("{}: {e}", root.display()), "set HUTCH_STATE_DIR to a folder you can write"),
    }
}

/// Unreadable records, VMs recorded as running whose processes are gone, and
/// locks that are held right now.
fn records(state: &StateDir) -> Vec<Check> {
    let Ok(list) = state.list() else { return Vec::new() };
    let mut out = Vec::new();
    for (name, record) in list {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                out.push(Check::fail(&format!("VM {name}"), e.to_string(), format!("remove it with `hutch rm -f {name}`")));
                continue;
            }
        };
        let dir = state.vm_dir(&name);
        let vm_state = backend::for_kind(record.kind(), state).and_then(|b| b.state(&record, &dir));
        match vm_state {
            Ok(VmState::Running) => out.push(Check::ok(&format!("VM {name}"), format!("running, {}", record.addr_text()))),
            Ok(other) if record.started_unix.is_some() => out.push(Check::warn(
                &format!("VM {name}"),
                format!("recorded as running but {}", other.as_str()),
                format!("`hutch up --name {name}` starts it again; `hutch rm -f {name}` removes it"),
            )),
            Ok(other) => out.push(Check::ok(&format!("VM {name}"), other.as_str())),
            Err(e) => out.push(Check::warn(&format!("VM {name}"), e.to_string(), "use a hutch built with that backend")),
        }
        if lock_is_held(&dir) {
            out.push(Check::warn(
                &format!("VM {name} lock"),
                "held by another hutch right now",
                "wait for it; if no hutch is running, the holder is stuck: find it with `fuser` on the lock file",
            ));
        }
    }
    out
}

fn lock_is_held(dir: &std::path::Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let Ok(file) = std::fs::File::open(dir.join("lock")) else { return false };
    matches!(Flock::lock(file, FlockArg::LockExclusiveNonblock), Err((_, nix::errno::Errno::EWOULDBLOCK)))
}

fn qemu(state: &StateDir) -> Vec<Check> {
    let mut out = Vec::new();
    let qemu_bin = std::env::var("HUTCH_QEMU").unwrap_or_else(|_| format!("qemu-system-{}", std::env::consts::ARCH));
    out.push(match first_line(&qemu_bin, "--version") {
        Some(version) => Check::ok("qemu", version),
        None => Check::fail("qemu", format!("{qemu_bin} not found"), "apt-get install qemu-system-x86 (or set HUTCH_QEMU)"),
    });
    if std::path::Path::new("/dev/vhost-vsock").exists() {
        out.push(Check::ok("vsock", "kernel vhost-vsock (/dev/vhost-vsock)"));
    } else {
        let bin = std::env::var("HUTCH_VHOST_DEVICE_VSOCK").unwrap_or_else(|_| "vhost-device-vsock".into());
        let found = first_line(&bin, "--version").or_else(|| {
            let cargo_bin = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo/bin/vhost-device-vsock"))?;
            first_line(cargo_bin.to_str()?, "--version")
        });
        out.push(match found {
            Some(version) => Check::ok("vsock", format!("no /dev/vhost-vsock; user space: {version}")),
            None => Check::fail("vsock", "no /dev/vhost-vsock and no vhost-device-vsock", "cargo install vhost-device-vsock --locked"),
        });
    }
    out.push(workspace_share());
    let choice = accel::choose(state.root(), std::env::var("HUTCH_QEMU_ACCEL").ok().as_deref());
    out.push(match choice.accel {
        accel::Accel::Kvm => Check::ok("accelerator", choice.reason),
        accel::Accel::Tcg => Check::warn(
            "accelerator",
            format!("TCG (software emulation, slower): {}", choice.reason),
            "use a host with working KVM for faster guests",
        ),
    });
    let image = std::env::var("HUTCH_IMAGE").map(std::path::PathBuf::from).unwrap_or_else(|_| state.default_image());
    out.push(match GuestImage::load(&image) {
        Ok(img) => Check::ok("image", format!("{} ({})", image.display(), img.spec.kernel)),
        Err(e) => Check::fail("image", e.to_string(), "build it with `cargo xtask image`, or pass --image DIR"),
    });
    out
}

/// How `hutch up` will share the workspace: virtio-fs when virtiofsd runs
/// (and can sandbox itself), else 9p, many times slower.
fn workspace_share() -> Check {
    const NAME: &str = "workspace share";
    match virtiofs::Preference::from_env() {
        Err(e) => return Check::fail(NAME, e.to_string(), "unset HUTCH_QEMU_SHARE, or set it to auto, virtiofs or 9p"),
        Ok(virtiofs::Preference::NineP) => return Check::ok(NAME, "9p, as HUTCH_QEMU_SHARE=9p asks"),
        Ok(_) => {}
    }
    let slow = "the workspace goes over 9p, 2-20x slower than virtio-fs (docs/workspace.md)";
    let Some(binary) = qemu::find_virtiofsd() else {
        return Check::warn(NAME, format!("virtiofsd not found: {slow}"), virtiofs::INSTALL);
    };
    let Some(version) = binary.to_str().and_then(|b| first_line(b, "--version")) else {
        return Check::warn(NAME, format!("{} does not run: {slow}", binary.display()), virtiofs::INSTALL);
    };
    match crate::userns::obstacle() {
        Some(why) => Check::warn(
            NAME,
            format!("{version} cannot sandbox itself as a user other than root: {why}, so {slow}"),
            "allow unprivileged user namespaces (e.g. `sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0`), or run hutch as root",
        ),
        None => Check::ok(NAME, format!("virtio-fs ({version}, {})", binary.display())),
    }
}

fn first_line(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program).arg(arg).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned())
}
