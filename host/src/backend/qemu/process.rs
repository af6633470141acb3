//! The long-lived processes a QEMU VM is made of (qemu itself and its
//! vhost-device-vsock), started detached from hutch and found again later by
//! pid, never by name.
//!
//! A pid is trusted only while `/proc/PID/cmdline` still mentions the VM's
//! state folder: after a reboot or a crash the pid may belong to someone else,
//! and hutch must never signal a stranger.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::backend::{BackendError, output_to_log};

/// Starts `cmd` in its own session (so a Ctrl-C aimed at hutch never reaches
/// it and it outlives hutch), with stdout/stderr appended to `log`.
pub fn spawn_detached(mut cmd: Command, log: &Path) -> Result<u32, BackendError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    output_to_log(&mut cmd, log)?;
    // SAFETY: setsid is async-signal-safe; it runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackendError::MissingTool { tool: program.clone(), install: install_hint(&program) },
        _ => BackendError::Io { what: format!("starting {program}"), source: e },
    })?;
    // The child is reaped by init once hutch exits; hutch never waits on it.
    Ok(child.id())
}

/// How to install the programs the QEMU backend runs.
pub fn install_hint(program: &str) -> String {
    if program.contains("vhost-device-vsock") {
        "install it with `cargo install vhost-device-vsock --locked` (or set HUTCH_VHOST_DEVICE_VSOCK to its path)".into()
    } else {
        "install QEMU (Debian/Ubuntu: `apt-get install qemu-system-x86`), or set HUTCH_QEMU to its path".into()
    }
}

/// Whether `pid` is alive and still one of this VM's processes.
pub fn is_ours(pid: u32, vm_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let needle = vm_dir.as_os_str().as_encoded_bytes();
    let alive = !matches!(std::fs::read_to_string(format!("/proc/{pid}/stat")), Ok(stat) if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')));
    alive && cmdline.windows(needle.len()).any(|w| w == needle)
}

/// Sends SIGTERM to our process `pid`, then SIGKILL after `grace`; returns
/// once it is gone (or was never ours).
pub fn terminate(pid: u32, vm_dir: &Path, grace: Duration) {
    if !is_ours(pid, vm_dir) {
        return;
    }
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    if wait_gone(pid, vm_dir, grace) {
        return;
    }
    let _ = kill(target, Signal::SIGKILL);
    wait_gone(pid, vm_dir, Duration::from_secs(5));
}

/// Waits until `pid` is no longer our live process.
pub fn wait_gone(pid: u32, vm_dir: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_ours(pid, vm_dir) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Waits until `path` exists (a socket a daemon creates once it is ready),
/// failing early if `pid` dies first.
pub fn wait_for_path(path: &Path, pid: u32, vm_dir: &Path, timeout: Duration) -> Result<(), BackendError> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if !is_ours(pid, vm_dir) {
            return Err(BackendError::Boot(format!("process {pid} exited before creating {}", path.display())));
        }
        if Instant::now() >= deadline {
            return Err(BackendError::Boot(format!("{} did not appear within {timeout:?}", path.display())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
