//! Connecting to a VM's agent: [`connect`], the one way every command, the
//! lifecycle, the workspace set-up and doctor reach a VM they know by its
//! record.
//!
//! It goes through the VM's multiplexer when one runs (starting one for the
//! next command when none answers, see `crate::mux`), and when the agent
//! cannot be reached it asks the VM's backend why, so every caller reports
//! "VM web is stopped" or "running but its agent does not answer" the same
//! way. This is `hutch exec`'s hot path: it reads the record and connects;
//! only a failure runs the VM manager's CLI.

use hutch_proto::addr::Addr;

use crate::backend::{self, Backend, VmState};
use crate::state::{StateDir, StateError, VmName, VmRecord};
use crate::transport::{self, BearerToken, Client, TransportError};

/// Lines of the VM's console shown when its agent does not answer.
const CONSOLE_LINES: usize = 15;

/// Why a VM's agent (or an agent at an address) could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The record is unusable (no address yet).
    #[error(transparent)]
    State(#[from] StateError),
    /// The transport failed, and there is no VM to ask why (or its backend
    /// could not tell).
    #[error("cannot reach the agent: {0}")]
    Transport(#[from] TransportError),
    /// The VM is not in a state where its agent can answer.
    #[error("VM {name} is {state}, so its agent cannot answer")]
    VmDown {
        /// The VM.
        name: VmName,
        /// What its backend says it is.
        state: VmState,
    },
    /// The VM runs but its agent does not answer.
    #[error("VM {name} is running but its agent does not answer ({cause})")]
    AgentSilent {
        /// The VM.
        name: VmName,
        /// Why connecting failed.
        cause: TransportError,
        /// The end of its console, when the backend has one.
        console: Option<String>,
    },
}

impl ConnectError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConnectError::State(e) => e.hint(),
            ConnectError::Transport(e) => Some(e.hint()),
            ConnectError::VmDown { name, .. } => Some(format!("start it with `hutch up --name {name}`")),
            ConnectError::AgentSilent { name, console, .. } => Some(match console {
                Some(console) => format!("restart it with `hutch reset {name}`; its last output:\n{console}"),
                None => format!("restart it with `hutch reset {name}`"),
            }),
        }
    }
}

/// Connects to the agent of the VM `record` describes: through its
/// multiplexer when it has one (and `HUTCH_MUX` allows), else directly,
/// turning a failure into the reason and the fix.
pub async fn connect(state: &StateDir, record: &VmRecord) -> Result<Client, ConnectError> {
    // A throw-away VM (`run --rm`, a warm pool's) serves a handful of calls
    // in its life: a multiplexer would cost more to start than it saves.
    if !crate::mux::enabled() || record.ephemeral {
        return direct(record).await.map_err(|e| diagnose(state, record, e));
    }
    if let Some(client) = crate::mux::connect(state, &record.name).await {
        return Ok(client.named(peer(record)));
    }
    let client = direct(record).await.map_err(|e| diagnose(state, record, e))?;
    crate::mux::start(state, &record.name);
    Ok(client)
}

/// Connects to the VM's agent itself, never through a multiplexer and
/// without a diagnosis: for callers that poll a booting VM.
pub async fn direct(record: &VmRecord) -> Result<Client, ConnectError> {
    let token = BearerToken::load(record.token_file.as_deref())?;
    Ok(transport::connect(record.agent_addr()?, token).await?.named(peer(record)))
}

/// How messages name the agent of `record`'s VM.
pub fn peer(record: &VmRecord) -> String {
    format!("VM {}'s agent", record.name)
}

/// Connects to an agent at an address, with no VM behind it as far as hutch
/// knows (`--addr`).
pub async fn to_addr(addr: &Addr, token: BearerToken) -> Result<Client, ConnectError> {
    Ok(transport::connect(addr, token).await?)
}

/// Asks the VM's backend why the agent of `record`'s VM cannot be reached.
fn diagnose(state: &StateDir, record: &VmRecord, error: ConnectError) -> ConnectError {
    match backend::for_kind(record.kind(), state) {
        Ok(backend) => diagnose_with(backend.as_ref(), state, record, error),
        Err(_) => error,
    }
}

/// Asks `backend` why the agent of `record`'s VM cannot be reached: a
/// transport failure becomes [`ConnectError::VmDown`] or
/// [`ConnectError::AgentSilent`] when the backend can tell.
pub fn diagnose_with(backend: &dyn Backend, state: &StateDir, record: &VmRecord, error: ConnectError) -> ConnectError {
    let ConnectError::Transport(cause) = error else { return error };
    let dir = state.vm_dir(&record.name);
    match backend.state(record, &dir) {
        Ok(VmState::Running) => {
            ConnectError::AgentSilent { name: record.name.clone(), cause, console: backend.console_tail(&dir, CONSOLE_LINES) }
        }
        Ok(state) => ConnectError::VmDown { name: record.name.clone(), state },
        Err(e) => {
            tracing::warn!("cannot ask the backend about {}: {e}", record.name);
            ConnectError::Transport(cause)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeBackend;
    use crate::state::{BackendState, QemuState};

    /// The record of a VM `web` whose agent socket does not exist, and the
    /// transport error connecting to it gives.
    async fn unreachable() -> (tempfile::TempDir, StateDir, VmRecord, ConnectError) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        let spec = crate::backend::fake::spec("web", None);
        let addr = Addr::Unix(dir.path().join("gone.sock"));
        let record = spec.record("base".into(), Some(addr), BackendState::Qemu(QemuState::default()));
        let error = direct(&record).await.err().expect("nothing listens");
        (dir, state, record, error)
    }

    #[tokio::test]
    async fn a_stopped_vm_is_down() {
        let (_dir, state, record, error) = unreachable().await;
        let diagnosed = diagnose_with(&FakeBackend::new([Ok(VmState::Stopped)]), &state, &record, error);
        assert!(matches!(&diagnosed, ConnectError::VmDown { state: VmState::Stopped, .. }), "{diagnosed}");
        assert_eq!(diagnosed.to_string(), "VM web is stopped, so its agent cannot answer");
        assert_eq!(diagnosed.hint().unwrap(), "start it with `hutch up --name web`");
    }

    #[tokio::test]
    async fn a_running_vm_whose_agent_is_silent_shows_its_console() {
        let (_dir, state, record, error) = unreachable().await;
        let diagnosed = diagnose_with(&FakeBackend::new([Ok(VmState::Running)]), &state, &record, error);
        let ConnectError::AgentSilent { cause: TransportError::NoSocket(_), console: Some(console), .. } = &diagnosed else {
            panic!("{diagnosed:?}")
        };
        assert!(console.contains("kernel panic"));
        assert!(diagnosed.hint().unwrap().contains("hutch reset web"));
    }

    #[tokio::test]
    async fn a_backend_that_cannot_tell_leaves_the_transport_error() {
        let (_dir, state, record, error) = unreachable().await;
        let diagnosed = diagnose_with(&FakeBackend::new([Err("no answer".into())]), &state, &record, error);
        assert!(matches!(diagnosed, ConnectError::Transport(TransportError::NoSocket(_))), "{diagnosed}");
    }

    #[tokio::test]
    async fn a_record_without_an_address_says_so() {
        let (_dir, _state, mut record, _) = unreachable().await;
        record.addr = None;
        let err = direct(&record).await.err().expect("no address");
        assert!(matches!(err, ConnectError::State(StateError::NoAddress(_))), "{err}");
    }
}
