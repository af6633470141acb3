//! Test harness: the real `hutch` and `hutch-agent` binaries, a real agent on
//! a real socket, and a real local terminal for PTY tests.
//!
//! Nothing here mocks the agent. Binaries are built once per test process
//! through cargo, so `cargo test` never runs stale binaries.

pub mod fakes;
pub mod h2raw;
pub mod hostile_agent;
pub mod hvsock_proxy;
pub mod mcp;
pub mod netvm;
pub mod pidfd;
pub mod pty;
pub mod raw;
pub mod rss;
pub mod snapshot;
pub mod sshd;
pub mod tarball;
pub mod vm;
pub mod web;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

/// Paths of the freshly built binaries.
pub struct Binaries {
    /// The `hutch` CLI.
    pub hutch: PathBuf,
    /// The `hutch-agent` daemon.
    pub agent: PathBuf,
}

/// Builds (once per test process) and returns the binaries under test.
///
/// Runs `cargo build --workspace --bins` in the profile this test was built
/// with: building the whole workspace resolves dependency features exactly as
/// `cargo test --workspace` did, so no dependency is compiled a second time.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        // This test binary lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("test binary in <target>/<profile>/deps").to_path_buf();
        let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug").to_owned();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo.current_dir(workspace).args(["build", "--quiet", "--workspace", "--bins"]);
        cargo.env("CARGO_TARGET_DIR", profile_dir.parent().expect("target dir"));
        // `cargo test` gives this process the test crate's own variables
        // (CARGO_MANIFEST_DIR, CARGO_PKG_*…). Build scripts that watch one
        // (ring's `rerun-if-env-changed`) would see it change between the
        // outer build and this one and rebuild every time; the outer build
        // never had them.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_by_cargo_test = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_"].iter().any(|p| name.starts_with(p))
                || name == "CARGO_PRIMARY_PACKAGE"
                || name == "CARGO_TARGET_TMPDIR";
            if set_by_cargo_test {
                cargo.env_remove(name.as_ref());
            }
        }
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cargo.arg("--release");
            }
            other => {
                cargo.args(["--profile", other]);
            }
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "cargo build --workspace --bins failed");
        Binaries { hutch: profile_dir.join("hutch"), agent: profile_dir.join("hutch-agent") }
    })
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
    /// execs it with the arguments appended), waiting for its "ready" line.
    pub fn spawn(mut cmd: Command, dir: TempDir, addr: String, token_file: Option<PathBuf>, extra: &[&str], log: Option<PathBuf>) -> Agent {
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("create the agent log")),
            None => Stdio::inherit(),
        };
        cmd.arg("--listen").arg(&addr).args(extra).env("HUTCH_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        if !extra.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(dir.path().join("state"));
        }
        if let Some(token) = &token_file {
            cmd.arg("--token-file").arg(token);
        }
        let mut child = cmd.spawn().expect("spawn hutch-agent");
        let stdout = child.stdout.take().expect("agent stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read agent ready line");
        assert!(line.contains("ready on"), "agent did not start: {line:?}");
        Agent { child, addr, token_file, dir, log }
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
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The exit code of a finished `hutch`, panicking with its stderr if it was killed.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or_else(|| panic!("hutch died by a signal: {:?}\nstderr: {}", out.status, stderr(out)))
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A TCP port that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `data` to `name` in `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write test file");
    path
}

/// An upper bound for things that must be "prompt": generous, so a loaded CI
/// machine does not fail the test, yet far below what a hang would take.
pub const PROMPT: Duration = Duration::from_secs(5);

/// Every audit line in the state folder `state` (the per-project files
/// under `audit/`, rotated ones first), as text.
pub fn audit_log(state: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state.join("audit"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .collect();
    // `p.jsonl.3` … `p.jsonl.1` before `p.jsonl`: oldest first.
    files.sort_by_key(|p| std::cmp::Reverse(p.to_string_lossy().into_owned()));
    files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect()
}

/// Whether the hutch daemon whose log is `log` runs: it keeps the log
/// locked (`flock`) for its whole life (see hutch's `daemon` module).
pub fn daemon_running(log: &Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let Ok(file) = std::fs::File::open(log) else { return false };
    matches!(Flock::lock(file, FlockArg::LockSharedNonblock), Err((_, nix::errno::Errno::EWOULDBLOCK)))
}
