//! `hutch up`: create (if needed) and start a VM, and wait for its agent.

use crate::backend::{self, Backend, VmSpec};
use crate::cli::UpArgs;
use crate::error::Error;
use crate::lifecycle::{self, Outcome};
use crate::state::{StateDir, VmLock, VmName, default_name};
use crate::target;

/// Runs `hutch up`; returns the exit code.
pub async fn run(args: UpArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let backend = backend::for_kind(args.backend, &state)?;
    let spec = spec(&args, &state, backend.as_ref(), None, false)?;
    let _lock = VmLock::acquire(&state.create_vm_dir(&spec.name)?)?;
    let outcome = lifecycle::ensure_running(&state, backend.as_ref(), &spec).await?;
    let name = spec.name.clone();
    announce(backend.as_ref(), outcome);
    initial_sync(&state, &name).await?;
    Ok(0)
}

/// Copies the workspace into a `--ro` VM (or brings its copy up to date).
pub async fn initial_sync(state: &StateDir, name: &VmName) -> Result<(), Error> {
    let target = crate::target::Target::for_vm(state.clone(), name)?;
    if let Some(report) = target.sync_snapshot(true).await? {
        eprintln!("hutch: snapshot of the workspace: {}", report.line());
    }
    Ok(())
}

/// The VM `up`/`run` asks for. `name` overrides `--name` and the default.
pub fn spec(args: &UpArgs, state: &StateDir, backend: &dyn Backend, name: Option<VmName>, ephemeral: bool) -> Result<VmSpec, Error> {
    let workspace = if args.no_workspace { None } else { Some(target::workspace(args.workspace.as_deref())?) };
    let name = match (name.or_else(|| args.name.clone()), &workspace) {
        (Some(name), _) => name,
        (None, Some(ws)) => default_name(ws),
        (None, None) => default_name(&std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?),
    };
    Ok(VmSpec {
        name,
        image: args.image.clone().or_else(|| backend.default_image(state)),
        cpus: args.cpus,
        memory_mib: args.memory,
        workspace,
        ephemeral,
        ro: args.ro_mode()?,
    })
}

/// Tells the user what `ensure_running` did.
pub fn announce(backend: &dyn Backend, outcome: Outcome) {
    match outcome {
        Outcome::AlreadyUp(record) => println!("{} is already up: {}", record.name, record.addr),
        Outcome::Started(record, took) => {
            for note in backend.notes(&record) {
                eprintln!("hutch: {note}");
            }
            println!("{} is up in {:.1} s: {}", record.name, took.as_secs_f64(), record.addr);
        }
    }
}
