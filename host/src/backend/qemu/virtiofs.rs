//! The workspace over virtio-fs: rust-vmm's `virtiofsd` serves the host folder
//! behind QEMU's `vhost-user-fs-pci` (on the memfd memory QEMU already shares
//! with vhost-device-vsock) and the agent mounts its tag at the host's path.
//! One daemon of the VM (`crate::daemon`, log `virtiofsd.log`), started
//! before QEMU; it exits by itself when QEMU closes the connection, and
//! `stop` terminates it if it lingers.
//!
//! When `virtiofsd` is missing, or exits before it listens (e.g. a non-root
//! user on a host that forbids unprivileged user namespaces), the workspace
//! goes over QEMU's own 9p instead, with a one-line notice: slower, never
//! broken. `HUTCH_QEMU_SHARE` chooses: `auto` (the default: virtio-fs, else
//! 9p), `virtiofs` (fail rather than fall back) or `9p`.
//!
//! The daemon's options are those of docs/workspace.md:
//! - `--cache auto`: the guest trusts a cached name or attribute for 1 s and
//!   drops a file's cached contents at every open, so a host edit is visible
//!   in the guest within 1 s (`always` would keep a stale copy for a day);
//! - `--sandbox namespace` (the default): virtiofsd pivots into the shared
//!   folder in its own mount, pid and net namespaces (a user namespace when
//!   not root), so no symlink the guest makes leads outside it;
//! - every guest uid and gid squashed to the user running hutch, so whatever
//!   the guest writes into the project belongs to that user, and no guest
//!   `chown` can hand a host file to anyone else;
//! - no `CAP_MKNOD`/`CAP_SETFCAP` (no device nodes, no file capabilities in
//!   the project), and extended attributes off (virtiofsd's default), which
//!   also spares a round trip per write;
//! - started through `hutch guard-exec` when the VM has a git guard, so it
//!   serves the project from a mount namespace where `.git` is read-only
//!   (`crate::git`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::helper::{check_socket_path, daemon_error};
use crate::backend::BackendError;
use crate::daemon::{Daemon, DaemonError};
use crate::state::QemuShare;

/// The vhost-user socket QEMU and virtiofsd share, in the VM folder.
pub const SOCKET: &str = "virtiofs.sock";
/// The program's name, in PATH or `~/.cargo/bin`, and the daemon's.
pub const PROGRAM: &str = "virtiofsd";
/// How to get virtiofsd.
pub const INSTALL: &str = "install it with `cargo install virtiofsd --locked` (building it needs Debian's libseccomp-dev and libcap-ng-dev), or set HUTCH_VIRTIOFSD to its path";
/// How long virtiofsd may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What the user asked for in `HUTCH_QEMU_SHARE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// virtio-fs when virtiofsd runs, else 9p with a notice.
    Auto,
    /// virtio-fs or an error.
    Virtiofs,
    /// 9p, without trying virtiofsd.
    NineP,
}

impl Preference {
    /// Reads `HUTCH_QEMU_SHARE` (unset or empty: auto).
    pub fn from_env() -> Result<Preference, BackendError> {
        Preference::parse(&std::env::var("HUTCH_QEMU_SHARE").unwrap_or_default())
    }

    /// A `HUTCH_QEMU_SHARE` value.
    pub fn parse(text: &str) -> Result<Preference, BackendError> {
        match text {
            "" | "auto" => Ok(Preference::Auto),
            "virtiofs" => Ok(Preference::Virtiofs),
            "9p" => Ok(Preference::NineP),
            other => Err(BackendError::Unsupported(format!(
                "HUTCH_QEMU_SHARE={other:?} is not a way to share the workspace: use auto (the default), virtiofs or 9p"
            ))),
        }
    }
}

/// virtiofsd as a daemon of the VM in `vm_dir` (its output in `virtiofsd.log`).
pub fn daemon(vm_dir: &Path) -> Daemon {
    Daemon::new(vm_dir, PROGRAM)
}

/// The workspace share a VM start settled on.
#[derive(Debug, PartialEq, Eq)]
pub struct Settled {
    /// What QEMU is given.
    pub share: QemuShare,
    /// Why it is 9p although virtio-fs was wanted: the one-line notice.
    pub notice: Option<String>,
}

/// [`settle`] as `HUTCH_QEMU_SHARE` asks, printing the notice, if any, on
/// stderr.
pub fn settle_from_env(binary: Option<&Path>, workspace: &Path, vm_dir: &Path) -> Result<QemuShare, BackendError> {
    let settled = settle(Preference::from_env()?, binary, workspace, vm_dir)?;
    if let Some(notice) = &settled.notice {
        eprintln!("hutch: {notice}");
    }
    Ok(settled.share)
}

/// Starts virtiofsd for `workspace` when `preference` and this host allow,
/// else settles on 9p. `binary` is where virtiofsd was found, if anywhere.
pub fn settle(preference: Preference, binary: Option<&Path>, workspace: &Path, vm_dir: &Path) -> Result<Settled, BackendError> {
    let nine_p = |notice: Option<String>| Ok(Settled { share: QemuShare::NineP, notice });
    if preference == Preference::NineP {
        return nine_p(None);
    }
    let Some(binary) = binary else {
        if preference == Preference::Virtiofs {
            return Err(BackendError::MissingTool { tool: PROGRAM.into(), install: INSTALL.into() });
        }
        return nine_p(Some(format!(
            "virtiofsd not found: the workspace is shared over 9p, which is many times slower; {INSTALL} (see `hutch doctor`)"
        )));
    };
    match start(binary, workspace, vm_dir) {
        Ok(()) => Ok(Settled { share: QemuShare::Virtiofs, notice: None }),
        Err(e) if preference == Preference::Auto => nine_p(Some(format!(
            "virtiofsd did not start ({e}; its log: {}): the workspace is shared over 9p instead, which is many times slower",
            daemon(vm_dir).log().display()
        ))),
        Err(e) => Err(e),
    }
}

/// Starts virtiofsd serving `workspace` on the VM's socket and waits for the
/// socket.
pub fn start(binary: &Path, workspace: &Path, vm_dir: &Path) -> Result<(), BackendError> {
    let socket = vm_dir.join(SOCKET);
    check_socket_path(&socket)?;
    // One left from a QEMU that died would hold the log's lock: QEMU is not
    // running now, so it serves no one.
    let daemon = daemon(vm_dir);
    daemon.terminate(Duration::from_secs(2));
    remove_leftovers(vm_dir);
    // In the git guard's namespace when the VM has one (see `crate::git::namespace`).
    let mut cmd = crate::git::namespace::command(binary, vm_dir).map_err(|e| BackendError::Boot(e.to_string()))?;
    cmd.args(daemon_args(workspace, &socket, nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()));
    let spawned = daemon.spawn(cmd).map_err(|e| daemon_error(e, INSTALL))?;
    spawned.wait_until(START_TIMEOUT, |_| socket.exists()).map_err(|e| match e {
        DaemonError::TimedOut { .. } => {
            daemon.terminate(Duration::from_secs(2));
            BackendError::Boot(e.to_string())
        }
        other => daemon_error(other, INSTALL),
    })
}

/// virtiofsd's command line (see the module documentation for the reasons).
pub fn daemon_args(workspace: &Path, socket: &Path, uid: u32, gid: u32) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |key: &str, value: OsString| {
        args.push(key.into());
        args.push(value);
    };
    push("--shared-dir", workspace.into());
    push("--socket-path", socket.into());
    push("--sandbox", "namespace".into());
    push("--cache", "auto".into());
    push("--translate-uid", format!("squash-guest:0:{uid}:{}", u32::MAX).into());
    push("--translate-gid", format!("squash-guest:0:{gid}:{}", u32::MAX).into());
    push("--log-level", "warn".into());
    args.push("--modcaps=-mknod:-setfcap".into());
    args
}

/// Removes what a daemon that died unclean left: its socket and pid file.
pub fn remove_leftovers(vm_dir: &Path) {
    let socket = vm_dir.join(SOCKET);
    let mut pid_file = socket.clone().into_os_string();
    pid_file.push(".pid");
    for stale in [socket, PathBuf::from(pid_file)] {
        let _ = std::fs::remove_file(stale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_is_sandboxed_squashes_ids_and_caches_for_one_second() {
        let args: Vec<String> = daemon_args(Path::new("/home/me/p"), Path::new("/s/virtiofs.sock"), 1000, 100)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("--shared-dir /home/me/p --socket-path /s/virtiofs.sock --sandbox namespace --cache auto"), "{joined}");
        assert!(joined.contains("--translate-uid squash-guest:0:1000:4294967295"));
        assert!(joined.contains("--translate-gid squash-guest:0:100:4294967295"));
        assert!(joined.ends_with("--modcaps=-mknod:-setfcap"));
        assert!(!joined.contains("--xattr"));
    }

    #[test]
    fn without_virtiofsd_auto_falls_back_to_9p_with_a_notice_and_virtiofs_fails() {
        let dir = tempfile::tempdir().unwrap();
        let settled = settle(Preference::Auto, None, dir.path(), dir.path()).unwrap();
        assert_eq!(settled.share, QemuShare::NineP);
        let notice = settled.notice.unwrap();
        assert!(notice.contains("9p") && notice.contains("cargo install virtiofsd --locked"), "{notice}");
        assert!(!notice.contains('\n'));
        assert!(matches!(settle(Preference::Virtiofs, None, dir.path(), dir.path()), Err(BackendError::MissingTool { .. })));
        let chosen = settle(Preference::NineP, Some(Path::new("/bin/false")), dir.path(), dir.path()).unwrap();
        assert_eq!(chosen, Settled { share: QemuShare::NineP, notice: None });
    }

    #[test]
    fn a_daemon_that_exits_at_once_means_9p_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("virtiofsd");
        std::fs::write(&fake, "#!/bin/sh\necho 'Error: user namespaces are not allowed' >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let settled = settle(Preference::Auto, Some(&fake), dir.path(), dir.path()).unwrap();
        assert_eq!(settled.share, QemuShare::NineP);
        let notice = settled.notice.unwrap();
        assert!(notice.contains("user namespaces are not allowed") && notice.contains("virtiofsd.log"), "{notice}");
        assert!(settle(Preference::Virtiofs, Some(&fake), dir.path(), dir.path()).is_err());
    }

    #[test]
    fn the_share_preference_is_checked() {
        assert_eq!(Preference::parse("").unwrap(), Preference::Auto);
        assert_eq!(Preference::parse("9p").unwrap(), Preference::NineP);
        assert_eq!(Preference::parse("virtiofs").unwrap(), Preference::Virtiofs);
        let refused = Preference::parse("nfs").unwrap_err().to_string();
        assert!(refused.contains("auto (the default), virtiofs or 9p"), "{refused}");
    }
}
