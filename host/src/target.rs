//! Which agent a command talks to: an agent at an address (`--addr`), or a VM
//! hutch manages, by name or from the current directory.
//!
//! Choosing is all this module does: connecting is `crate::connect`'s job,
//! and bringing a `--ro` snapshot up to date `crate::sync`'s.

use std::path::Path;

use hutch_proto::addr::Addr;

use crate::connect::{self, ConnectError};
use crate::state::{StateDir, StateError, VmName, VmRecord, default_name};
use crate::transport::{BearerToken, Client, TransportError};

/// Why no target could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The state directory or the VM's record is unusable (no such VM…).
    #[error(transparent)]
    State(#[from] StateError),
    /// The token file given with `--addr` is unusable.
    #[error("cannot reach the agent: {0}")]
    Token(#[from] TransportError),
    /// The current directory (which says which VM is meant) is unreadable.
    #[error("reading the current directory: {0}")]
    Cwd(std::io::Error),
    /// The VM waits in a warm pool, where nothing may run before a run takes it.
    #[error(
        "{0} is a ready VM of a warm pool: commands run in it only once `hutch run --rm` takes it, so that it is as fresh as a new one"
    )]
    InPool(VmName),
}

impl TargetError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            TargetError::State(e) => e.hint(),
            TargetError::Token(e) => Some(e.hint()),
            TargetError::Cwd(_) => None,
            TargetError::InPool(_) => Some("`hutch ls` lists the VMs; `hutch up` makes one of your own".into()),
        }
    }
}

/// Where to send calls.
pub enum Target {
    /// An agent at an address, with no VM behind it as far as hutch knows.
    Agent {
        /// Its address.
        addr: Addr,
        /// Token for `tcp://`.
        token: BearerToken,
    },
    /// A VM hutch manages.
    Vm {
        /// The state directory it lives in.
        state: StateDir,
        /// Its record.
        record: Box<VmRecord>,
    },
}

impl Target {
    /// `name` wins; then `addr` (with the token in `token_file`); then the
    /// current workspace's VM.
    pub fn resolve(name: Option<&VmName>, addr: Option<&Addr>, token_file: Option<&Path>) -> Result<Target, TargetError> {
        match (name, addr) {
            (None, Some(addr)) => Ok(Target::Agent { addr: addr.clone(), token: BearerToken::load(token_file)? }),
            _ => Target::vm(name),
        }
    }

    /// The target for VM `name`, or for the current workspace's VM.
    pub fn vm(name: Option<&VmName>) -> Result<Target, TargetError> {
        let state = StateDir::from_env()?;
        let name = vm_name(&state, name)?;
        Target::for_vm(state, &name)
    }

    /// The target for VM `name`.
    pub fn for_vm(state: StateDir, name: &VmName) -> Result<Target, TargetError> {
        let record = state.load(name)?;
        if record.pool.is_some() {
            return Err(TargetError::InPool(name.clone()));
        }
        Ok(Target::Vm { state, record: Box::new(record) })
    }

    /// The VM's record, when the target is a VM.
    pub fn record(&self) -> Option<&VmRecord> {
        match self {
            Target::Agent { .. } => None,
            Target::Vm { record, .. } => Some(record),
        }
    }

    /// The agent's address, as shown to people.
    pub fn addr_text(&self) -> String {
        match self {
            Target::Agent { addr, .. } => addr.to_string(),
            Target::Vm { record, .. } => record.addr_text(),
        }
    }

    /// The guest working directory to use when none is given: the host's
    /// current directory when it lies inside the VM's workspace (which the
    /// guest sees at the same path), else the workspace itself.
    pub fn default_cwd(&self) -> Option<String> {
        let workspace = self.record()?.workspace.as_ref()?;
        let cwd = std::env::current_dir().ok().filter(|cwd| cwd.starts_with(workspace));
        Some(cwd.unwrap_or_else(|| workspace.clone()).display().to_string())
    }

    /// Connects (see `crate::connect`).
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        match self {
            Target::Agent { addr, token } => connect::to_addr(addr, token.clone()).await,
            Target::Vm { state, record } => connect::connect(state, record).await,
        }
    }
}

/// `name`, or the VM for the current directory: the one named after it, else
/// the one whose workspace contains it (the deepest).
pub fn vm_name(state: &StateDir, name: Option<&VmName>) -> Result<VmName, TargetError> {
    if let Some(name) = name {
        return Ok(name.clone());
    }
    let cwd = std::env::current_dir().map_err(TargetError::Cwd)?;
    let own = default_name(&cwd);
    if state.vm_dir(&own).join("vm.json").exists() {
        return Ok(own);
    }
    let mut best: Option<(usize, VmName)> = None;
    for (name, record) in state.list()? {
        // A warm pool's VMs are nobody's until a run takes them.
        if let Ok(VmRecord { workspace: Some(ws), pool: None, .. }) = record {
            let depth = ws.components().count();
            if cwd.starts_with(&ws) && best.as_ref().is_none_or(|(d, _)| depth > *d) {
                best = Some((depth, name));
            }
        }
    }
    best.map(|(_, name)| name).ok_or_else(|| TargetError::State(StateError::NoSuchVm(own.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::VmState;
    use crate::backend::fake::spec;
    use crate::state::{BackendState, QemuState};

    #[tokio::test]
    async fn an_address_is_an_agent_and_a_name_is_a_vm_whose_failure_is_diagnosed() {
        let dir = tempfile::tempdir().unwrap();
        let addr: Addr = format!("unix://{}", dir.path().join("agent.sock").display()).parse().unwrap();
        let agent = Target::resolve(None, Some(&addr), None).unwrap();
        assert!(agent.record().is_none());
        assert_eq!(agent.addr_text(), addr.to_string());
        assert!(matches!(agent.connect().await.err(), Some(ConnectError::Transport(TransportError::NoSocket(_)))));

        // A VM by name: its record, its workspace as the default directory,
        // and a failure to connect explained by its backend (here QEMU, with
        // neither process nor disk: missing).
        let state = StateDir::at(dir.path().join("state"));
        let name = VmName::new("web").unwrap();
        let mut record = spec("web", None).record("base".into(), Some(addr.clone()), BackendState::Qemu(QemuState::default()));
        record.workspace = Some(dir.path().to_path_buf());
        record.save(&state.create_vm_dir(&name).unwrap()).unwrap();
        let vm = Target::for_vm(state, &name).unwrap();
        assert_eq!(vm.record().map(|r| r.name.as_str()), Some("web"));
        assert_eq!(vm.default_cwd(), Some(dir.path().display().to_string()));
        let err = vm.connect().await.err().expect("nothing listens");
        assert!(matches!(&err, ConnectError::VmDown { state: VmState::Missing, .. }), "{err}");
        assert_eq!(err.to_string(), "VM web is missing, so its agent cannot answer");
    }

    #[test]
    fn a_bad_token_file_with_an_address_is_a_target_error() {
        let dir = tempfile::tempdir().unwrap();
        let addr: Addr = "tcp://127.0.0.1:9".parse().unwrap();
        let err = Target::resolve(None, Some(&addr), Some(&dir.path().join("no-token"))).err().expect("no token file");
        assert!(matches!(err, TargetError::Token(TransportError::BadToken { .. })), "{err}");
        assert!(err.hint().is_some());
    }
}
