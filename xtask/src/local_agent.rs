//! A hutch-agent on a private Unix socket, for the demo and the benchmarks.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::workspace::Result;

/// A running local agent; stopped with SIGTERM when dropped.
pub struct LocalAgent {
    child: Child,
    /// Its address, for HUTCH_ADDR.
    pub addr: String,
    _dir: TempDir,
}

impl LocalAgent {
    /// Starts `agent_bin` and waits for its "ready" line.
    pub fn start(agent_bin: &Path) -> Result<Self> {
        Self::start_with(agent_bin, &[])
    }

    /// Starts `agent_bin` with `extra` arguments and waits for its "ready" line.
    pub fn start_with(agent_bin: &Path, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("hutch-").tempdir()?;
        let socket = dir.path().join("agent.sock");
        let addr = format!("unix://{}", socket.display());
        let mut cmd = Command::new(agent_bin);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            // Detached from our terminal, as a daemon in a guest is.
            cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
        }
        let state = dir.path().join("state");
        let mut child = cmd
            .args(["--listen", &addr])
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .env("HUTCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", agent_bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no agent stdout")?).read_line(&mut line)?;
        if !line.contains("ready on") {
            let _ = child.kill();
            return Err(format!("the agent did not start: {line:?}").into());
        }
        Ok(Self { child, addr, _dir: dir })
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
