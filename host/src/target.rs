//! Which agent a command talks to: an explicit address, or a VM by name.
//!
//! This is `hutch exec`'s hot path: it reads one small JSON record and
//! connects. It never runs a VM manager's CLI; only when connecting fails does
//! it ask the backend why, to say what is wrong and what fixes it.

use hutch_proto::addr::Addr;

use crate::backend::{self, VmState};
use crate::cli::AgentArgs;
use crate::error::Error;
use crate::state::{StateDir, StateError, VmName, VmRecord, default_name};
use crate::transport::{self, BearerToken, Client, TransportError};

/// Where to send calls, and the VM behind it if there is one.
pub struct Target {
    /// The agent's address.
    pub addr: Addr,
    /// Token for `tcp://`.
    pub token: BearerToken,
    /// The VM, when the target was chosen by name.
    pub vm: Option<(StateDir, VmRecord)>,
}

impl Target {
    /// `--name` wins; then `--addr`/`HUTCH_ADDR`; then the current workspace's VM.
    pub fn resolve(name: Option<&VmName>, agent: &AgentArgs) -> Result<Target, Error> {
        if name.is_none()
            && let Some(addr) = &agent.addr
        {
            return Ok(Target { addr: addr.clone(), token: agent.token()?, vm: None });
        }
        Target::vm(name)
    }

    /// The target for VM `name`, or for the current workspace's VM.
    pub fn vm(name: Option<&VmName>) -> Result<Target, Error> {
        let state = StateDir::from_env()?;
        let name = vm_name(&state, name)?;
        Target::for_vm(state, &name)
    }

    /// The target for VM `name`.
    pub fn for_vm(state: StateDir, name: &VmName) -> Result<Target, Error> {
        let record = state.load(name)?;
        let token = match &record.token_file {
            Some(path) => BearerToken::from_file(path)?,
            None => BearerToken::default(),
        };
        Ok(Target { addr: record.agent_addr()?.clone(), token, vm: Some((state, record)) })
    }

    /// The guest working directory to use when none is given: the host's
    /// current directory when it lies inside the VM's workspace (which the
    /// guest sees at the same path), else the workspace itself.
    pub fn default_cwd(&self) -> Option<String> {
        let workspace = self.vm.as_ref()?.1.workspace.as_ref()?;
        let cwd = std::env::current_dir().ok().filter(|cwd| cwd.starts_with(workspace));
        Some(cwd.unwrap_or_else(|| workspace.clone()).display().to_string())
    }

    /// For a `--ro` VM, brings its snapshot up to date with the host (a cheap
    /// call when nothing changed); `None` for any other target.
    pub async fn sync_snapshot(&self, client: &mut Client, progress: bool) -> Result<Option<crate::sync::Report>, Error> {
        let Some((_, record)) = &self.vm else { return Ok(None) };
        let (Some(ro), Some(root)) = (record.ro, &record.workspace) else { return Ok(None) };
        let source = crate::sync::source(root, ro.git, ro.no_ignore);
        Ok(Some(crate::sync::sync(client, &source, progress).await?))
    }

    /// Connects, through the VM's multiplexer when it has one running (see
    /// `crate::mux`), turning a failure into the reason and the fix.
    pub async fn connect(&self) -> Result<Client, Error> {
        let vm = self.vm.as_ref().filter(|_| crate::mux::enabled());
        let Some((state, name)) = vm.map(|(state, record)| (state, record.name.clone())) else {
            return self.connect_directly().await;
        };
        if let Some(client) = crate::mux::connect(state, &name).await {
            return Ok(client);
        }
        let client = self.connect_directly().await?;
        crate::mux::start(state, &name);
        Ok(client)
    }

    /// Connects to the agent itself, never through a multiplexer.
    async fn connect_directly(&self) -> Result<Client, Error> {
        match transport::connect(&self.addr, self.token.clone()).await {
            Ok(client) => Ok(client),
            Err(e) => Err(self.diagnose(e)),
        }
    }

    /// Asks the backend why the agent of this target's VM cannot be reached.
    fn diagnose(&self, error: TransportError) -> Error {
        let Some((state, record)) = &self.vm else { return error.into() };
        let Ok(backend) = backend::for_kind(record.kind(), state) else { return error.into() };
        let dir = state.vm_dir(&record.name);
        match backend.state(record, &dir) {
            Err(e) => {
                tracing::warn!("cannot ask the backend about {}: {e}", record.name);
                error.into()
            }
            Ok(VmState::Running) => {
                Error::AgentSilent { name: record.name.to_string(), cause: error.to_string(), console: backend.console_tail(&dir, 15) }
            }
            Ok(other) => Error::VmDown { name: record.name.to_string(), state: other.as_str().to_owned() },
        }
    }
}

/// `name`, or the VM for the current directory: the one named after it, else
/// the one whose workspace contains it (the deepest).
pub fn vm_name(state: &StateDir, name: Option<&VmName>) -> Result<VmName, Error> {
    if let Some(name) = name {
        return Ok(name.clone());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?;
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
    best.map(|(_, name)| name).ok_or_else(|| Error::State(StateError::NoSuchVm(own.to_string())))
}
