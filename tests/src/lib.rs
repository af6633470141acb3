//! Test harness: the real `hutch` and `hutch-agent` binaries, a real agent on
//! a real socket ([`agent`]), a private sshd ([`sshd`]), and a real local
//! terminal for PTY tests. `cargo xtask` starts its agents and sshd through
//! the same fixtures.
//!
//! Nothing here mocks the agent. Binaries are built once per test process
//! through cargo, so `cargo test` never runs stale binaries.

pub mod agent;
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

pub use agent::Agent;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

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
        without_package_env(&mut cargo);
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

/// Removes from `cargo` (a nested cargo command) the variables that `cargo
/// test` or `cargo run` gave this process for its own package
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, `CARGO_PRIMARY_PACKAGE`…). Build
/// scripts that watch one (ring's `rerun-if-env-changed`) would see it change
/// between the outer build and this one and rebuild every time; the outer
/// build never had them. Used by [`binaries`] and by `cargo xtask`.
pub fn without_package_env(cargo: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_the_package = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_"].iter().any(|p| name.starts_with(p))
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_TARGET_TMPDIR";
        if set_for_the_package {
            cargo.env_remove(name.as_ref());
        }
    }
    cargo
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
