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
}

impl TargetError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            TargetError::State(e) => e.hint(),
            TargetError::Token(e) => Some(e.hint()),
            TargetError::Cwd(_) => None,
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
        if let Ok(VmRecord { workspace: Some(ws), .. }) = record {
            let depth = ws.components().count();
            if cwd.starts_with(&ws) && best.as_ref().is_none_or(|(d, _)| depth > *d) {
                best = Some((depth, name));
            }
        }
    }
    best.map(|(_, name)| name).ok_or_else(|| TargetError::State(StateError::NoSuchVm(own.to_string())))
}
