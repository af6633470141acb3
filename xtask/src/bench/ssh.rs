//! The SSH anchor: a private `sshd` on 127.0.0.1 and the `ssh` commands that
//! reach it, fresh or through a ControlMaster.
//!
//! Everything lives in a throw-away directory under `target/bench/`: a host
//! key, a user key, `authorized_keys`, `known_hosts` and the config. sshd runs
//! in the foreground (`-D -e`) as the current user on a free port; it is ready
//! once it logs "Server listening", and it is stopped (SIGTERM, reaped) on drop.
//!
//! The anchor is kept conservative (as fast as ssh can be): sessions get
//! `SHLVL=1`, so bash, which sshd runs as `bash -c CMD`, counts as nested and
//! skips `~/.bashrc`; a dotfile that runs e.g. `pyenv init` would otherwise add
//! hundreds of milliseconds that are not ssh's own cost.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::workspace::{Result, target_dir};

/// Where Debian's openssh-server installs the daemon.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running private sshd and what a client needs to log in.
pub struct Sshd {
    child: Child,
    port: u16,
    user: String,
    dir: TempDir,
}

impl Sshd {
    /// Starts sshd, or says in one line why the SSH rows are skipped.
    pub fn start() -> std::result::Result<Sshd, String> {
        if !Path::new(SSHD).exists() {
            return Err(format!("{SSHD} not found; `apt-get install -y openssh-server` adds the SSH rows"));
        }
        Self::try_start().map_err(|e| format!("could not start a private sshd: {e}"))
    }

    fn try_start() -> Result<Sshd> {
        let base = target_dir().join("bench");
        std::fs::create_dir_all(&base)?;
        let dir = tempfile::Builder::new().prefix("sshd-").tempdir_in(&base)?;
        let path = |name: &str| dir.path().join(name);
        keygen(&path("host_key"))?;
        keygen(&path("id"))?;
        std::fs::copy(path("id.pub"), path("authorized_keys"))?;
        let port = free_port()?;
        let host_key = std::fs::read_to_string(path("host_key.pub"))?;
        std::fs::write(path("known_hosts"), format!("[127.0.0.1]:{port} {host_key}"))?;
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nX11Forwarding no\nPrintMotd no\nLogLevel INFO\n\
             SetEnv SHLVL=1\n",
            path("host_key").display(),
            path("authorized_keys").display()
        );
        std::fs::write(path("sshd_config"), config)?;
        ensure_privsep_dir()?;

        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no sshd stderr")?;
        let mut log = BufReader::new(stderr);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if log.read_line(&mut line)? == 0 {
                let status = child.wait()?;
                return Err(format!("sshd exited ({status}): {}", seen.trim()).into());
            }
            seen.push_str(&line);
            if line.contains("Server listening on") {
                break;
            }
        }
        // Keep draining the log so sshd never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            while matches!(log.read(&mut sink), Ok(n) if n > 0) {}
        });
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())?.ok_or("the current user has no passwd entry")?.name;
        Ok(Sshd { child, port, user, dir })
    }

    /// An `ssh` command with a fresh connection (no multiplexing) that runs `remote`.
    pub fn fresh(&self, remote: &[&str]) -> Command {
        self.fresh_with(&[], remote)
    }

    /// Like [`Sshd::fresh`], with a remote terminal (`ssh -tt`).
    pub fn fresh_tty(&self, remote: &[&str]) -> Command {
        self.fresh_with(&["-tt"], remote)
    }

    fn fresh_with(&self, options: &[&str], remote: &[&str]) -> Command {
        let mut cmd = self.base();
        cmd.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]).args(options).arg(self.destination()).args(remote);
        cmd
    }

    /// Starts a ControlMaster connection for [`Master::command`] to reuse.
    pub fn master(&self) -> Result<Master> {
        let socket = self.dir.path().join("control.sock");
        // The remote side announces itself, then waits for stdin to close: once
        // its first line arrives the master's control socket is listening.
        let mut child = self
            .base()
            .args(["-M", "-S"])
            .arg(&socket)
            .args(["-o", "ControlPersist=no"])
            .arg(self.destination())
            .arg("echo ready && exec cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no ssh stdout")?).read_line(&mut line)?;
        let master = Master { child, socket, base: self.base(), destination: self.destination() };
        if line.trim() != "ready" {
            return Err(format!("the ssh ControlMaster did not start (said {line:?})").into());
        }
        let check = master.control(&["-O", "check"]).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if !check.success() {
            return Err("the ssh ControlMaster does not answer on its socket".into());
        }
        Ok(master)
    }

    fn base(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-p", &self.port.to_string(), "-i"])
            .arg(self.dir.path().join("id"))
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.dir.path().join("known_hosts").display()))
            .args(["-o", "LogLevel=ERROR"]);
        cmd
    }

    fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop(&mut self.child);
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
        stop(&mut self.child);
    }
}

fn stop(child: &mut Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

fn keygen(path: &Path) -> Result<()> {
    let status = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "hutch-bench", "-f"]).arg(path).status()?;
    if status.success() { Ok(()) } else { Err(format!("ssh-keygen failed ({status})").into()) }
}

/// A port nothing listens on right now (the OS picks it).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// sshd insists on its privilege-separation directory, which only the
/// distribution's service unit creates.
fn ensure_privsep_dir() -> Result<()> {
    let dir = Path::new("/run/sshd");
    if !dir.exists() && nix::unistd::getuid().is_root() {
        std::fs::create_dir_all(dir)?;
    }
    Ok(())
}
