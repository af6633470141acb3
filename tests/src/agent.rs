//! A real `hutch-agent` on a private socket, the one fixture for the tests
//! (through [`binaries`](crate::binaries)) and for `cargo xtask` (`demo`, the
//! benchmarks, `bench-sync`), which pass the binary they built.
//!
//! The agent is started with `--listen ADDR` and its state under its own
//! folder, and is ready once it prints its "ready on" line (no sleeps); it is
//! stopped (SIGTERM, then reaped) when dropped.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

use crate::{binaries, free_tcp_port};

/// Why an agent did not start.
#[derive(Debug)]
pub enum AgentError {
    /// A step before it could answer failed: what was being done, and why.
    Io(String, std::io::Error),
    /// It exited, or printed something other than its "ready on" line.
    NotReady(String),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Io(what, e) => write!(f, "{what}: {e}"),
            AgentError::NotReady(line) => write!(f, "the agent did not start: {line:?}"),
        }
    }
}

impl std::error::Error for AgentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AgentError::Io(_, e) => Some(e),
            AgentError::NotReady(_) => None,
        }
    }
}

/// How [`Agent::launch`] starts an agent, beyond its command, folder and address.
#[derive(Default)]
pub struct AgentOptions<'a> {
    /// A token file the agent requires (`--token-file`; TCP agents).
    pub token_file: Option<PathBuf>,
    /// More arguments; a `--state-dir` among them replaces the default `dir/state`.
    pub extra: &'a [&'a str],
    /// A file for its stderr (its log), which [`Agent::log`] reads; inherited when `None`.
    pub log: Option<PathBuf>,
    /// Runs it in a session of its own (`setsid`), detached from our terminal
    /// as a daemon in a guest is.
    pub detach: bool,
}

/// A running `hutch-agent`, stopped (SIGTERM, then reaped) when dropped.
pub struct Agent {
    child: Child,
    /// The address clients use (`unix:///…` or `tcp://…`).
    pub addr: String,
    /// Token file for TCP agents.
    pub token_file: Option<PathBuf>,
    /// Scratch directory owned by this agent (socket, token, test files).
    pub dir: TempDir,
    /// Where its stderr goes, for agents started with [`Agent::start_logged`].
    log: Option<PathBuf>,
}

impl Agent {
    /// Starts an agent on a Unix socket in a fresh temp dir.
    pub fn unix() -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("unix://{}", dir.path().join("agent.sock").display());
        Agent::start(dir, addr, None, &[])
    }

    /// Starts an agent on a loopback TCP port that requires `token`.
    pub fn tcp(token: &str) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{token}\n")).expect("write token");
        let port = free_tcp_port();
        let addr = format!("tcp://127.0.0.1:{port}");
        Agent::start(dir, addr, Some(token_file), &[])
    }

    /// Starts an agent listening on `addr`, waiting for its "ready" line. Its
    /// state (session journal, snapshot records) goes to `dir/state` unless
    /// `extra` names a `--state-dir`.
    pub fn start(dir: TempDir, addr: String, token_file: Option<PathBuf>, extra: &[&str]) -> Agent {
        Agent::spawn(Command::new(&binaries().agent), dir, addr, token_file, extra, None)
    }

    /// Like [`Agent::start`], with the agent's stderr (its log) kept in a file
    /// that [`Agent::log`] reads.
    pub fn start_logged(dir: TempDir, addr: String, token_file: Option<PathBuf>, extra: &[&str]) -> Agent {
        let log = dir.path().join("agent.log");
        Agent::spawn(Command::new(&binaries().agent), dir, addr, token_file, extra, Some(log))
    }

    /// Starts the agent through `cmd` (the agent binary, or a wrapper that
    /// execs it with the arguments appended), waiting for its "ready" line;
    /// panics if it does not start.
    pub fn spawn(cmd: Command, dir: TempDir, addr: String, token_file: Option<PathBuf>, extra: &[&str], log: Option<PathBuf>) -> Agent {
        Agent::launch(cmd, dir, addr, AgentOptions { token_file, extra, log, detach: false }).unwrap_or_else(|e| panic!("{e}"))
    }

    /// For tools (`cargo xtask`): starts the agent binary `bin` with `extra`
    /// arguments on a Unix socket in a fresh temp dir, detached from our
    /// terminal, and waits for its "ready" line.
    pub fn local(bin: &Path, extra: &[&str]) -> Result<Agent, AgentError> {
        let dir = tempfile::Builder::new().prefix("hutch-").tempdir().map_err(|e| AgentError::Io("temp dir".into(), e))?;
        let addr = format!("unix://{}", dir.path().join("agent.sock").display());
        Agent::launch(Command::new(bin), dir, addr, AgentOptions { extra, detach: true, ..AgentOptions::default() })
    }

    /// Starts the agent through `cmd` (the agent binary, or a wrapper that
    /// execs it with the arguments appended) listening on `addr`, with its
    /// state in `dir/state` unless `options.extra` names a `--state-dir`, and
    /// waits for its "ready" line. `dir` lives (and is removed) with the agent.
    pub fn launch(mut cmd: Command, dir: TempDir, addr: String, options: AgentOptions<'_>) -> Result<Agent, AgentError> {
        let AgentOptions { token_file, extra, log, detach } = options;
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).map_err(|e| AgentError::Io(format!("create {}", path.display()), e))?),
            None => Stdio::inherit(),
        };
        cmd.arg("--listen").arg(&addr).args(extra).env("HUTCH_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        if !extra.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(dir.path().join("state"));
        }
        if let Some(token) = &token_file {
            cmd.arg("--token-file").arg(token);
        }
        if detach {
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
            }
        }
        let program = Path::new(cmd.get_program()).display().to_string();
        let mut child = cmd.spawn().map_err(|e| AgentError::Io(format!("starting {program}"), e))?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(stdout) => BufReader::new(stdout).read_line(&mut line).map(drop),
            None => Err(std::io::Error::other("no stdout")),
        };
        if let Err(e) = read {
            stop(&mut child);
            return Err(AgentError::Io(format!("reading {program}'s ready line"), e));
        }
        if !line.contains("ready on") {
            stop(&mut child);
            return Err(AgentError::NotReady(line));
        }
        Ok(Agent { child, addr, token_file, dir, log })
    }

    /// What the agent has logged so far (agents from [`Agent::start_logged`]).
    pub fn log(&self) -> Vec<u8> {
        let path = self.log.as_ref().expect("an agent started with start_logged");
        std::fs::read(path).expect("read the agent log")
    }

    /// The agent's Unix socket, for agents listening on one.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.addr.strip_prefix("unix://").expect("a unix:// agent"))
    }

    /// A `hutch` command aimed at this agent (HUTCH_ADDR and token set).
    pub fn hutch(&self) -> Command {
        let mut cmd = Command::new(&binaries().hutch);
        cmd.env("HUTCH_ADDR", &self.addr).env_remove("HUTCH_TOKEN_FILE").env_remove("HUTCH_LOG");
        if let Some(token) = &self.token_file {
            cmd.env("HUTCH_TOKEN_FILE", token);
        }
        cmd
    }

    /// Runs `hutch exec <args>` with stdin from /dev/null and collects the output.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.hutch().arg("exec").args(args).stdin(Stdio::null()).output().expect("run hutch")
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the agent to exit; returns its status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        self.child.wait().expect("wait agent")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM, then reap.
fn stop(child: &mut Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}
