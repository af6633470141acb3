//! `hutch up`: create (if needed) and start a VM, and wait for its agent.

use crate::backend::{self, Backend, VmSpec};
use crate::cli::UpArgs;
use crate::config::Config;
use crate::error::Error;
use crate::hooks;
use crate::lifecycle::{self, Outcome};
use crate::state::{StateDir, VmLock, VmName, default_name};
use crate::target::{self, Target};

/// Runs `hutch up`; returns the exit code.
pub async fn run(args: UpArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let plan = plan(&args, &state, None, false)?;
    let _lock = VmLock::acquire(&state.create_vm_dir(&plan.spec.name)?)?;
    let outcome = lifecycle::ensure_running(&state, plan.backend.as_ref(), &plan.spec).await?;
    let fresh = matches!(outcome, Outcome::Started(..));
    announce(plan.backend.as_ref(), outcome);
    initial_sync(&state, &plan.spec.name).await?;
    if fresh {
        run_runtime_hook(&state, &plan).await?;
    }
    crate::mux::ensure_started(&state, &plan.spec.name);
    if !args.forward.is_empty() {
        crate::forward::detached::start(&state, &plan.spec.name, &args.forward)?;
        let ports: Vec<String> = args.forward.iter().map(ToString::to_string).collect();
        println!(
            "forwarding {} (log: {})",
            ports.join(" "),
            state.vm_dir(&plan.spec.name).join(crate::forward::detached::LOG_FILE).display()
        );
    }
    Ok(0)
}

/// Copies the workspace into a `--ro` VM (or brings its copy up to date).
pub async fn initial_sync(state: &StateDir, name: &VmName) -> Result<(), Error> {
    let target = crate::target::Target::for_vm(state.clone(), name)?;
    if target.vm.as_ref().is_none_or(|(_, record)| record.ro.is_none()) {
        return Ok(()); // shared mode: nothing to copy
    }
    if let Some(report) = target.sync_snapshot(&mut target.connect().await?, true).await? {
        eprintln!("hutch: snapshot of the workspace: {}", report.line());
    }
    Ok(())
}

/// What `up`/`run` resolved from flags, configuration files and defaults.
pub struct Plan {
    /// The merged configuration.
    pub config: Config,
    /// The VM to create or start.
    pub spec: VmSpec,
    /// Its backend.
    pub backend: Box<dyn Backend>,
}

/// Resolves the VM `up`/`run` asks for. `name` overrides `--name` and the default.
pub fn plan(args: &UpArgs, state: &StateDir, name: Option<VmName>, ephemeral: bool) -> Result<Plan, Error> {
    let workspace = if args.no_workspace { None } else { Some(target::workspace(args.workspace.as_deref())?) };
    let here = match &workspace {
        Some(ws) => ws.clone(),
        None => std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?,
    };
    let mut config = Config::load(&here)?;
    Config::flag(&mut config.backend, args.backend);
    Config::flag(&mut config.image, args.image.clone().map(Some));
    Config::flag(&mut config.cpus, args.cpus);
    Config::flag(&mut config.memory, args.memory);
    Config::flag(&mut config.disk, args.disk.map(Some));
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
    };
    Ok(Plan { config, spec, backend })
}

/// Runs the project's runtime hook in a freshly started VM.
pub async fn run_runtime_hook(state: &StateDir, plan: &Plan) -> Result<(), Error> {
    let Some(workspace) = &plan.spec.workspace else { return Ok(()) };
    let target = Target::for_vm(state.clone(), &plan.spec.name)?;
    hooks::run_runtime(&target, workspace, &plan.config.runtime_hook.value).await
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
