//! The agent `hutch mcp` serves: an agent at an address (`--addr`), or a VM
//! hutch manages, which it brings up when it is not running, as `hutch up`
//! would (same configuration files, same lifecycle), at the first tool call
//! that needs it rather than at start-up: clients spawn MCP servers to list
//! their tools, and that must not boot a VM.
//!
//! A `--ro` VM's copy of the project is left as it is: `hutch exec`
//! re-syncs it before each command, which resets the guest's changes, but
//! the changes an MCP client makes there are its work, for `diff` to return
//! (a new server, when the client restarts, must not wipe them). Booting
//! copies it in, as for `hutch up`; `hutch sync` refreshes it on demand.
//!
//! The lifecycle's code blocks (locks, VM managers' CLIs, waiting for
//! daemons) and is not `Send`, while MCP calls are tasks of one event loop.
//! So reaching a VM runs on a blocking thread that drives its future with
//! the runtime's handle: the event loop keeps answering the client (progress,
//! cancellations, other calls) while a VM boots, and the connection made
//! there is the event loop's, as any other.

use std::path::PathBuf;
use std::sync::Arc;

use hutch_proto::addr::Addr;
use tokio::sync::Mutex;

use super::progress::{self, Watch};
use crate::cli::UpArgs;
use crate::connect::{self, ConnectError};
use crate::lifecycle::{self, LifecycleError, Up};
use crate::plan::{Plan, PlanError};
use crate::state::{StateDir, StateError, VmLock, VmName, VmRecord, default_name};
use crate::target::{Target, TargetError};
use crate::transport::{BearerToken, Client};

/// Why the agent could not be reached, or the VM not brought up.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Which VM is meant could not be worked out.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The state folder or the VM's record is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The agent cannot be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// What `hutch up` would start could not be worked out (configuration, flags).
    #[error("cannot start VM {name}: {source}")]
    Plan {
        /// The VM.
        name: VmName,
        /// Why.
        #[source]
        source: Box<PlanError>,
    },
    /// The VM did not come up.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The thread that reaches the VM ended without an answer.
    #[error("reaching the VM failed: {0}")]
    Thread(#[from] tokio::task::JoinError),
}

impl VmError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            VmError::Target(e) => e.hint(),
            VmError::State(e) => e.hint(),
            VmError::Connect(e) => e.hint(),
            VmError::Plan { source, .. } => source.hint(),
            VmError::Lifecycle(e) => e.hint(),
            VmError::Thread(_) => None,
        }
    }
}

/// Which agent, as `hutch mcp`'s flags chose it.
#[derive(Clone)]
pub enum Place {
    /// An agent at an address, with no VM behind it as far as hutch knows.
    Agent {
        /// Its address.
        addr: Addr,
        /// Token for `tcp://`.
        token: BearerToken,
    },
    /// A VM hutch manages (which may not exist yet: the first call creates
    /// it, as `hutch up` in this folder would).
    Vm {
        /// The state folder.
        state: StateDir,
        /// The VM.
        name: VmName,
    },
}

impl Place {
    /// `--name` wins; then `--addr`; then the VM of the current directory's
    /// workspace, or the one `hutch up` would make for it.
    pub fn resolve(name: Option<&VmName>, addr: Option<&Addr>, token_file: Option<&std::path::Path>) -> Result<Place, VmError> {
        if let (None, Some(addr)) = (name, addr) {
            let token = BearerToken::load(token_file).map_err(TargetError::Token)?;
            return Ok(Place::Agent { addr: addr.clone(), token });
        }
        let state = StateDir::from_env()?;
        let name = match crate::target::vm_name(&state, name) {
            Ok(name) => name,
            Err(TargetError::State(StateError::NoSuchVm(_))) => default_name(&std::env::current_dir().map_err(TargetError::Cwd)?),
            Err(e) => return Err(e.into()),
        };
        Ok(Place::Vm { state, name })
    }
}

/// A connection to the agent, and what hutch knows of its VM.
pub struct Reached {
    /// The connection (the VM's multiplexer's, or the agent's).
    pub client: Client,
    /// The target, for the audit log, the working directory and the network.
    pub target: Target,
}

/// Reaching the agent for each tool call, bringing the VM up when needed.
pub struct Vm {
    place: Place,
    /// Held while a VM is reached, so two calls never boot it twice.
    booting: Mutex<()>,
}

impl Vm {
    /// Serves `place`.
    pub fn new(place: Place) -> Arc<Vm> {
        Arc::new(Vm { place, booting: Mutex::new(()) })
    }

    /// A connection for one call, starting the VM first when it does not
    /// run (and saying so through `watch`).
    pub async fn reach(&self, watch: Arc<dyn Watch>) -> Result<Reached, VmError> {
        let (state, name) = match &self.place {
            Place::Agent { addr, token } => {
                let client = connect::to_addr(addr, token.clone()).await?;
                return Ok(Reached { client, target: Target::Agent { addr: addr.clone(), token: token.clone() } });
            }
            Place::Vm { state, name } => (state.clone(), name.clone()),
        };
        let _booting = self.booting.lock().await;
        let handle = tokio::runtime::Handle::current();
        let shown = name.clone();
        let watching = watch.clone();
        let mut reaching = tokio::task::spawn_blocking(move || handle.block_on(reach_vm(state, name, watching.as_ref())));
        let began = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval_at(began + progress::EVERY, progress::EVERY);
        loop {
            tokio::select! {
                reached = &mut reaching => return reached?,
                _ = ticks.tick() => watch.still(format!("reaching VM {shown} ({} s)", began.elapsed().as_secs())),
            }
        }
    }
}

/// Connects to VM `name`, bringing it up as `hutch up` would when it is
/// stopped, missing, or running without an answering agent. Runs on a
/// blocking thread (see the module's documentation).
async fn reach_vm(state: StateDir, name: VmName, watch: &dyn Watch) -> Result<Reached, VmError> {
    let existing = match state.load(&name) {
        Ok(record) => Some(record),
        Err(StateError::NoSuchVm(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(record) = &existing {
        match connect::connect(&state, record).await {
            Ok(client) => {
                let target = Target::Vm { state: state.clone(), record: Box::new(record.clone()) };
                crate::net::exec::keep_network(&target);
                return Ok(Reached { client, target });
            }
            Err(ConnectError::VmDown { .. } | ConnectError::AgentSilent { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    watch.say(format!("starting VM {name} (as `hutch up --name {name}` would)"));
    let record = up(&state, &name, existing.as_ref(), watch).await?;
    let client = connect::connect(&state, &record).await?;
    Ok(Reached { client, target: Target::Vm { state, record: Box::new(record) } })
}

/// `hutch up --name NAME`, for a VM that exists (its workspace, snapshot
/// mode and backend kept) or one to make for the current directory. Its
/// messages go to stderr: stdout is the protocol's.
async fn up(state: &StateDir, name: &VmName, existing: Option<&VmRecord>, watch: &dyn Watch) -> Result<VmRecord, VmError> {
    let args = up_args(name, existing)?;
    let plan = Plan::new(&args, state, Some(name.clone()), false)
        .map_err(|source| VmError::Plan { name: name.clone(), source: Box::new(source) })?;
    let _lock = VmLock::acquire(&state.create_vm_dir(name)?)?;
    let backend = plan.backend.as_ref();
    let up = lifecycle::up(state, backend, &plan.spec, &plan.config.network, &plan.config.runtime_hook.value, |up| match up {
        Up::AlreadyUp(record) => watch.say(format!("VM {} is up", record.name)),
        Up::Started(record, took) => {
            for note in backend.notes(record) {
                eprintln!("hutch: {note}");
            }
            watch.say(format!("VM {} is up in {:.1} s", record.name, took.as_secs_f64()));
        }
    })
    .await?;
    crate::mux::ensure_started(state, name);
    Ok(up.record().clone())
}

/// The flags of `hutch up --name NAME` for an existing VM (its own
/// workspace, snapshot mode and backend, so nothing is asked that it was not
/// made with) or a new one (the current directory as the workspace), parsed
/// as `hutch up` parses them, so `HUTCH_IMAGE`, `HUTCH_BACKEND` and
/// `HUTCH_NETWORK` count as they do there.
fn up_args(name: &VmName, existing: Option<&VmRecord>) -> Result<UpArgs, VmError> {
    #[derive(clap::Parser)]
    struct Up {
        #[command(flatten)]
        args: UpArgs,
    }
    let mut argv: Vec<std::ffi::OsString> = vec!["hutch up".into(), "--name".into(), name.as_str().into()];
    if let Some(record) = existing {
        argv.extend(["--backend".into(), record.kind().as_str().into()]);
        match &record.workspace {
            Some(workspace) => argv.extend(["--workspace".into(), workspace.into()]),
            None => argv.push("--no-workspace".into()),
        }
        if let Some(ro) = record.ro {
            argv.push(if ro.git { "--ro-git" } else { "--ro" }.into());
            if ro.no_ignore {
                argv.push("--no-ignore".into());
            }
        }
    }
    let up = <Up as clap::Parser>::try_parse_from(argv)
        .map_err(|e| VmError::Plan { name: name.clone(), source: Box::new(PlanError::BadFlags(e.to_string().trim().to_owned())) })?;
    Ok(up.args)
}

/// The workspace the configuration is read from: the VM's, else the
/// current directory.
pub fn config_dir(place: &Place) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok();
    match place {
        Place::Agent { .. } => cwd,
        Place::Vm { state, name } => state.load(name).ok().and_then(|r| r.workspace).or(cwd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::spec;
    use crate::state::{BackendState, RoMode};

    #[test]
    fn an_existing_vm_is_brought_up_with_its_own_workspace_mode_and_backend() {
        let name = VmName::new("web").unwrap();
        let mut record =
            spec("web", Some(RoMode { git: true, no_ignore: true })).record("base".into(), None, BackendState::Lima(Default::default()));
        record.workspace = Some(PathBuf::from("/src/web"));
        let args = up_args(&name, Some(&record)).unwrap();
        assert_eq!((args.name.as_ref(), args.backend), (Some(&name), Some(crate::state::BackendKind::Lima)));
        assert_eq!(args.workspace.as_deref(), Some(std::path::Path::new("/src/web")));
        assert!(args.ro_git && args.no_ignore && !args.ro && !args.no_workspace);

        record.workspace = None;
        record.ro = None;
        let args = up_args(&name, Some(&record)).unwrap();
        assert!(args.no_workspace && args.ro_mode().unwrap().is_none());

        let fresh = up_args(&name, None).unwrap();
        assert!(fresh.workspace.is_none() && !fresh.no_workspace, "a new VM gets the current directory, as `hutch up` gives it");
    }
}
