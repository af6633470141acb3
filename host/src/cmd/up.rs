//! `hutch up`: create (if needed) and start a VM, and wait for its agent.

use crate::backend::{self, Backend, VmSpec};
use crate::cli::UpArgs;
use crate::error::Error;
use crate::lifecycle::{self, Outcome};
use crate::prepare::DEFAULT_HEAVY_DIRS;
use crate::state::{StateDir, VmLock, VmName, default_name};
use crate::target;

/// Runs `hutch up`; returns the exit code.
pub async fn run(args: UpArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let backend = backend::for_kind(args.backend, &state)?;
    let spec = spec(&args, &state, backend.as_ref(), None, false)?;
    let _lock = VmLock::acquire(&state.create_vm_dir(&spec.name)?)?;
    announce(backend.as_ref(), lifecycle::ensure_running(&state, backend.as_ref(), &spec).await?);
    if !args.forward.is_empty() {
        crate::forward::detached::start(&state, &spec.name, &args.forward)?;
        let ports: Vec<String> = args.forward.iter().map(ToString::to_string).collect();
        println!("forwarding {} (log: {})", ports.join(" "), state.vm_dir(&spec.name).join(crate::forward::detached::LOG_FILE).display());
    }
    Ok(0)
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
        heavy_dirs: heavy_dirs(args),
    })
}

/// The default heavy dirs plus `--heavy`, minus `--no-heavy`.
fn heavy_dirs(args: &UpArgs) -> Vec<String> {
    let mut dirs: Vec<String> = if args.no_heavy { Vec::new() } else { DEFAULT_HEAVY_DIRS.iter().map(|d| (*d).to_owned()).collect() };
    for extra in &args.heavy {
        if !dirs.contains(extra) {
            dirs.push(extra.clone());
        }
    }
    dirs
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
