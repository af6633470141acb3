//! What `hutch up` and `hutch run` ask for, resolved from their flags, the
//! configuration files and the defaults: the VM to bring up and its backend.

use crate::backend::{self, Backend, BackendError, VmSpec};
use crate::cli::{FlagConflict, UpArgs};
use crate::config::{Config, ConfigError};
use crate::state::{StateDir, VmName, default_name};
use crate::workspace::WorkspaceError;

/// Why what `up`/`run` ask for could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The workspace folder is unusable.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// A configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend is not available here.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The flags contradict each other.
    #[error(transparent)]
    Flags(#[from] FlagConflict),
    /// The flags do not parse (`hutch mcp` parses `up`'s for a VM it starts).
    #[error("{0}")]
    BadFlags(String),
    /// The current directory cannot be read.
    #[error("reading the current directory: {0}")]
    Cwd(#[source] std::io::Error),
}

impl PlanError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            PlanError::Workspace(e) => e.hint(),
            PlanError::Config(e) => e.hint(),
            PlanError::Backend(e) => e.hint(),
            PlanError::Flags(_) | PlanError::BadFlags(_) | PlanError::Cwd(_) => None,
        }
    }
}

/// The resolved request.
pub struct Plan {
    /// The merged configuration.
    pub config: Config,
    /// The VM to create or start.
    pub spec: VmSpec,
    /// Its backend.
    pub backend: Box<dyn Backend>,
}

impl Plan {
    /// Resolves the VM `up`/`run` asks for. `name` overrides `--name` and the default.
    pub fn new(args: &UpArgs, state: &StateDir, name: Option<VmName>, ephemeral: bool) -> Result<Plan, PlanError> {
        let workspace = if args.no_workspace { None } else { Some(crate::workspace::resolve(args.workspace.as_deref())?) };
        let here = match &workspace {
            Some(ws) => ws.clone(),
            None => std::env::current_dir().map_err(PlanError::Cwd)?,
        };
        let mut config = Config::load(&here)?;
        Config::flag(&mut config.backend, args.backend);
        Config::flag(&mut config.image, args.image.clone().map(Some));
        Config::flag(&mut config.cpus, args.cpus);
        Config::flag(&mut config.memory, args.memory);
        Config::flag(&mut config.network.mode, args.network);
        config.network.allow_flags(&args.allow);
        Config::flag(&mut config.disk, args.disk.map(Some));
        if args.unguarded_git {
            Config::flag(&mut config.unguarded_git, Some(true));
        }
        if args.no_heavy {
            Config::flag(&mut config.heavy, Some(Vec::new()));
        }
        if !args.heavy.is_empty() {
            let mut heavy = config.heavy.value.clone();
            heavy.extend(args.heavy.iter().filter(|h| !config.heavy.value.contains(h)).cloned());
            Config::flag(&mut config.heavy, Some(heavy));
        }
        let backend = backend::for_kind(config.backend.value, state)?;
        let spec = VmSpec {
            name: name.or_else(|| args.name.clone()).unwrap_or_else(|| default_name(&here)),
            image: config.image.value.clone().or_else(|| backend.default_image(state)),
            cpus: config.cpus.value,
            memory_mib: config.memory.value,
            disk_bytes: config.disk.value,
            workspace,
            ephemeral,
            heavy_dirs: config.heavy.value.clone(),
            ro: args.ro_mode()?,
            unguarded_git: config.unguarded_git.value,
            sync: workspace_synced(args, &config),
        };
        Ok(Plan { config, spec, backend })
    }
}

/// Whether the workspace is synced rather than shared: `--sync`, or
/// `workspace = "sync"` unless a flag asks for another mode.
fn workspace_synced(args: &UpArgs, config: &Config) -> bool {
    if args.sync {
        return true;
    }
    let other_mode = args.shared || args.ro || args.ro_git || args.no_workspace;
    !other_mode && config.workspace.value == crate::config::WorkspaceMode::Sync
}
