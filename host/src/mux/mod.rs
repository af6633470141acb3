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
//! ([`stop`]). `HUTCH_MUX=0` turns it off.

pub mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::state::{StateDir, VmName};
use crate::transport::{self, BearerToken, Client};

/// Why a multiplexer could not serve.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// The VM's record is unusable.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The VM's agent cannot be reached.
    #[error("cannot reach the agent: {0}")]
    Transport(#[from] crate::transport::TransportError),
    /// A local operation failed (its lock, its socket).
    #[error("{what}: {source}")]
    Local {
        /// What it was doing.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl MuxError {
    fn local(what: &'static str, source: std::io::Error) -> MuxError {
        MuxError::Local { what, source }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            MuxError::State(e) => e.hint(),
            MuxError::Transport(e) => Some(e.hint()),
            MuxError::Local { .. } => None,
        }
    }
}

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

/// Starts `hutch mux --name NAME` for the next commands, as a daemon of the
/// VM (`crate::daemon`: its own session, not our child, output in
/// `mux.log`), and waits (at most [`START_WAIT`]) until it serves or has
/// given up. Waiting makes `down` and `rm` right after this command find the
/// multiplexer and stop it, rather than race its start. Best effort: without
/// a multiplexer, commands connect directly.
pub fn start(state: &StateDir, name: &VmName) {
    let mut cmd = Command::new(match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return tracing::debug!("cannot start a multiplexer for {name}: {e}"),
    });
    cmd.args(["mux", "--name", name.as_str()]).env("HUTCH_STATE_DIR", state.root());
    let settled =
        daemon(&state.vm_dir(name)).spawn_claiming(cmd).and_then(|mux| mux.wait_until(START_WAIT, |news| news.lines().any(|l| l == READY)));
    if let Err(e) = settled {
        tracing::debug!("no multiplexer for {name}: {e}");
    }
}

/// Stops VM `vm_dir`'s multiplexer if one runs, and returns once it has
/// exited.
pub fn stop(vm_dir: &Path) {
    daemon(vm_dir).terminate(STOP_GRACE);
}

/// The multiplexer of the VM whose folder is `vm_dir`. It claims its lock
/// itself (see `crate::daemon`), which also makes it the only one: a second
/// leaves at once.
pub(crate) fn daemon(vm_dir: &Path) -> Daemon {
    Daemon::new(vm_dir, "mux")
}

/// How long a multiplexer has to leave after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Starts VM `name`'s multiplexer unless one already answers (`hutch up`
/// does, so its first command finds it ready).
pub fn ensure_started(state: &StateDir, name: &VmName) {
    if enabled() && std::os::unix::net::UnixStream::connect(socket_path(&state.vm_dir(name))).is_err() {
        start(state, name);
    }
}

/// How long [`start`] waits for the multiplexer to say it serves.
const START_WAIT: Duration = Duration::from_secs(5);

/// The line a multiplexer prints once it serves.
pub const READY: &str = "ready";
