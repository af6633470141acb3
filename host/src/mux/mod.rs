//! The per-VM multiplexer: one long-lived HTTP/2 connection to a VM's agent
//! that every `hutch` command for that VM shares, as ssh's ControlMaster
//! shares one SSH connection.
//!
//! Opening a connection to a guest costs more than the call it carries: a
//! vsock connect and an HTTP/2 handshake handled by an agent in a VM (about
//! 4 ms of a 16 ms `exec -- true` in a TCG guest). The multiplexer pays it
//! once. It listens on `vms/NAME/mux.sock` (mode 0600, in the VM's private
//! folder, beside the agent's own socket) and relays each call, unchanged,
//! as a new stream on its connection to the agent; streams, trailers,
//! cancellation and flow control pass through as they are.
//!
//! `hutch up` starts it. Commands that address a VM by name try it first
//! and, when none answers, connect directly and start one in the background
//! for the next command (see `Target::connect`). It leaves when its agent
//! connection ends (the VM stopped or stopped answering pings) or after
//! [`serve::IDLE`] without a client; `down`, `rm` and `reset` stop it first
//! ([`lock::stop`]). `HUTCH_MUX=0` turns it off.

pub mod lock;
pub mod serve;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::state::{StateDir, VmName};
use crate::transport::{self, BearerToken, Client};

/// The multiplexer's socket in a VM's folder.
pub fn socket_path(vm_dir: &Path) -> PathBuf {
    vm_dir.join("mux.sock")
}

/// Whether commands use multiplexers (`HUTCH_MUX=0` says no).
pub fn enabled() -> bool {
    std::env::var_os("HUTCH_MUX").is_none_or(|v| v != "0")
}

/// A client through VM `name`'s multiplexer, when one is running.
pub async fn connect(state: &StateDir, name: &VmName) -> Option<Client> {
    let socket = socket_path(&state.vm_dir(name));
    match transport::connect(&hutch_proto::addr::Addr::Unix(socket), BearerToken::default()).await {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::debug!("no multiplexer for {name}: {e}");
            None
        }
    }
}

/// Starts `hutch mux --name NAME` for the next commands, and waits (at most
/// [`START_WAIT`]) until it serves or has given up. Detached: its own session
/// (a Ctrl-C or hang-up for this command is not for it), none of this
/// command's descriptors (a caller reading our stdout to EOF must not wait
/// for it), stderr into `mux.log`, and not our child (a double fork): a
/// long-running command such as `hutch exec -- claude` that started it never
/// reaps children, so a multiplexer leaving before it would linger as its
/// zombie. Waiting makes `down` and `rm` right after this command find the
/// multiplexer and stop it, rather than race its start. Best effort: without
/// a multiplexer, commands connect directly.
pub fn start(state: &StateDir, name: &VmName) {
    if let Err(e) = spawn(state, name, &state.vm_dir(name)) {
        tracing::debug!("cannot start a multiplexer for {name}: {e}");
    }
}

/// Starts VM `name`'s multiplexer unless one already answers (`hutch up`
/// does, so its first command finds it ready).
pub fn ensure_started(state: &StateDir, name: &VmName) {
    if enabled() && std::os::unix::net::UnixStream::connect(socket_path(&state.vm_dir(name))).is_err() {
        start(state, name);
    }
}

/// How long [`start`] waits for the multiplexer to say it serves.
const START_WAIT: Duration = Duration::from_secs(5);

/// The line a multiplexer prints on stdout once it serves (and holds its lock).
pub const READY: &str = "ready";

fn spawn(state: &StateDir, name: &VmName, dir: &Path) -> std::io::Result<()> {
    if start_daemon(state, &["mux", "--name", name.as_str()], &dir.join("mux.log"), START_WAIT)?.is_none() {
        tracing::debug!("the multiplexer for {name} did not start within {START_WAIT:?}");
    }
    Ok(())
}

/// Starts `hutch ARGS…` as a per-VM daemon (detached as [`start`] says,
/// stderr appended to `log`) and waits at most `wait` for its first line on
/// stdout: `Some(line)` (empty when it exited without one), `None` when it
/// said nothing in time.
pub fn start_daemon(state: &StateDir, args: &[&str], log: &Path, wait: Duration) -> std::io::Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args).env("HUTCH_STATE_DIR", state.root()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    // SAFETY: runs in the forked child, which has a single thread, and makes
    // only async-signal-safe calls (fork, _exit, setsid).
    unsafe {
        cmd.pre_exec(|| {
            // The child leaves at once; its own child, which init (or the
            // nearest subreaper) adopts, goes on to become the daemon.
            if let nix::unistd::ForkResult::Parent { .. } = nix::unistd::fork()? {
                nix::libc::_exit(0);
            }
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // Reaps the intermediate child: it has left by the time `spawn` returns,
    // which std does once the daemon's exec succeeded.
    child.wait()?;
    let Some(mut stdout) = child.stdout.take() else { return Ok(Some(String::new())) };
    // Its first line, or EOF if it gave up; either way it has settled.
    let deadline = std::time::Instant::now() + wait;
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX);
        let mut fds = [nix::poll::PollFd::new(stdout.as_fd(), nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, timeout)? == 0 {
            return Ok(None);
        }
        let mut byte = [0u8; 1];
        if stdout.read(&mut byte)? == 0 || byte[0] == b'\n' {
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
        line.push(byte[0]);
    }
}
