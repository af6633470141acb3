//! The SSH anchor: the shared private sshd ([`hutch_tests::sshd::Sshd`]) on
//! 127.0.0.1 and the `ssh` commands that reach it, fresh or through a
//! ControlMaster.
//!
//! The server's keys, `known_hosts` and config live in a throw-away directory
//! under `target/bench/`; the fixture starts it (ready once a real login
//! works) and stops it on drop.
//!
//! The anchor is kept conservative (as fast as ssh can be): sessions get
//! `SHLVL=1`, so bash, which sshd runs as `bash -c CMD`, counts as nested and
//! skips `~/.bashrc`; a dotfile that runs e.g. `pyenv init` would otherwise add
//! hundreds of milliseconds that are not ssh's own cost.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use hutch_tests::sshd::{Sshd, SshdError};

use crate::workspace::{Result, target_dir};

/// The running private sshd the SSH rows are timed against.
pub struct Anchor {
    sshd: Sshd,
}

impl Anchor {
    /// Starts sshd, or says in one line why the SSH rows are skipped.
    pub fn start() -> std::result::Result<Anchor, String> {
        let base = target_dir().join("bench");
        std::fs::create_dir_all(&base).map_err(|e| format!("could not start a private sshd: {}: {e}", base.display()))?;
        match Sshd::builder().session_env("SHLVL=1").log_level("INFO").dir_in(&base).start() {
            Ok(sshd) => Ok(Anchor { sshd }),
            Err(SshdError::Missing) => {
                Err(format!("{} not found; `apt-get install -y openssh-server` adds the SSH rows", hutch_tests::sshd::SSHD))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// An `ssh` command with a fresh connection (no multiplexing) that runs `remote`.
    pub fn fresh(&self, remote: &[&str]) -> Command {
        self.fresh_with(&[], remote)
    }

    /// Like [`Anchor::fresh`], with a remote terminal (`ssh -tt`).
    pub fn fresh_tty(&self, remote: &[&str]) -> Command {
        self.fresh_with(&["-tt"], remote)
    }

    fn fresh_with(&self, options: &[&str], remote: &[&str]) -> Command {
        let mut cmd = self.sshd.ssh();
        cmd.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]).args(options).arg(self.sshd.destination()).args(remote);
        cmd
    }

    /// Starts a ControlMaster connection for [`Master::command`] to reuse.
    pub fn master(&self) -> Result<Master> {
        let socket = self.sshd.dir.path().join("control.sock");
        // The remote side announces itself, then waits for stdin to close: once
        // its first line arrives the master's control socket is listening.
        let mut child = self
            .sshd
            .ssh()
            .args(["-M", "-S"])
            .arg(&socket)
            .args(["-o", "ControlPersist=no"])
            .arg(self.sshd.destination())
            .arg("echo ready && exec cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no ssh stdout")?).read_line(&mut line)?;
        let master = Master { child, socket, base: self.sshd.ssh(), destination: self.sshd.destination() };
        if line.trim() != "ready" {
            return Err(format!("the ssh ControlMaster did not start (said {line:?})").into());
        }
        let check = master.control(&["-O", "check"]).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if !check.success() {
            return Err("the ssh ControlMaster does not answer on its socket".into());
        }
        Ok(master)
    }
}

/// A multiplexing master connection; clients made by [`Master::command`]
/// skip the TCP connect, key exchange and authentication.
pub struct Master {
    child: Child,
    socket: PathBuf,
    base: Command,
    destination: String,
}

impl Master {
    /// An `ssh` command that runs `remote` through the master.
    pub fn command(&self, remote: &[&str]) -> Command {
        let mut cmd = self.control(&["-o", "ControlMaster=no"]);
        cmd.arg(&self.destination).args(remote);
        cmd
    }

    fn control(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(self.base.get_program());
        cmd.args(self.base.get_args()).arg("-S").arg(&self.socket).args(extra);
        if extra.first() == Some(&"-O") {
            cmd.arg(&self.destination);
        }
        cmd
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
