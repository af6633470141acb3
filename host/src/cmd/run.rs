//! `hutch run [--rm] -- CMD…`: boot a VM, run one command, exit with its code.
//!
//! With `--rm` the VM is a throw-away clone of the base image under a fresh
//! name (so concurrent runs never share one), deleted when the command ends —
//! also when hutch gets Ctrl-C, SIGTERM or SIGHUP, during boot or during the
//! command (which first receives the signal, as with `hutch exec`).

use super::termination::termination;
use crate::backend::Backend;
use crate::cli::RunArgs;
use crate::config::env_pairs;
use crate::error::Error;
use crate::exec::{self, Finished, Options, SessionSpec};
use crate::forward::Bound;
use crate::lifecycle::{self, Up};
use crate::plan::Plan;
use crate::sessions::SessionError;
use crate::state::{StateDir, VmLock, VmName};
use crate::target::Target;

/// Runs `hutch run`; returns the exit code.
pub async fn run(args: RunArgs) -> Result<u8, Error> {
    if args.rm && (args.session.detach || args.session.keep) {
        return Err(SessionError::RmWithSession(if args.session.detach { "--detach" } else { "--keep" }).into());
    }
    let state = StateDir::from_env()?;
    // Before booting: a busy host port fails at once, with nothing to clean up.
    let forwards = crate::forward::bind(&args.up.forward)?;
    let name = if args.rm { Some(args.up.name.clone().unwrap_or_else(throwaway_name)) } else { None };
    let plan = Plan::new(&args.up, &state, name, args.rm)?;
    let (spec, backend) = (&plan.spec, plan.backend.as_ref());
    let lock = VmLock::acquire(&state.create_vm_dir(&spec.name)?)?;

    let booted = tokio::select! {
        booted = boot(&state, &plan) => booted,
        signal = termination() => Err(Error::Interrupted(signal?)),
    };
    if let Err(error) = booted {
        if args.rm {
            clean_up(&state, backend, &spec.name);
        }
        return Err(error);
    }
    // A kept VM is free for other hutch commands as soon as it is up; a
    // throw-away one stays locked until it is gone.
    let _held = if args.rm { Some(lock) } else { None };

    let result = async {
        let target = Target::for_vm(state.clone(), &spec.name)?;
        let mut options = args.exec.options(args.command.clone(), target.default_cwd());
        options.add_env(env_pairs(&plan.config.env.value));
        let secrets = crate::net::exec::real_values(&plan.config.network);
        crate::net::exec::scrub_env(&mut options.env, &secrets);
        // A throw-away VM cannot keep a session (refused above for the flags;
        // the configuration's default does not apply to it).
        let session = args.session.spec(&options, plan.config.keep.value && !args.rm)?;
        let session = session.as_ref();
        if forwards.is_empty() {
            crate::net::exec::run_audited(&target, &options, session, &secrets).await
        } else {
            run_forwarding(&target, &options, session, &secrets, forwards).await
        }
    }
    .await;
    if args.rm {
        // The guest's commits come back before the VM goes (see `crate::git`).
        if let Ok(record) = state.load(&spec.name) {
            crate::git::take::take_back(&state, &record).await;
        }
        clean_up(&state, backend, &spec.name);
    }
    exec::report::report(result, args.exec.json, Error::exit_code)
}

/// Boots (or finds) the VM, brings a `--ro` snapshot up to date, and runs
/// the runtime hook in a fresh VM (see `lifecycle::up`).
async fn boot(state: &StateDir, plan: &Plan) -> Result<(), Error> {
    let backend = plan.backend.as_ref();
    lifecycle::up(state, backend, &plan.spec, &plan.config.network, &plan.config.runtime_hook.value, |up| match up {
        Up::Started(record, took) => {
            tracing::info!("{} booted in {:.1} s ({})", record.name, took.as_secs_f64(), backend.notes(record).join("; "));
        }
        Up::AlreadyUp(record) => tracing::info!("{} was already up", record.name),
    })
    .await?;
    Ok(())
}

/// Runs the command while `forwards` are served (their lines go to stderr:
/// stdout is the command's).
async fn run_forwarding(
    target: &Target,
    options: &Options,
    session: Option<&SessionSpec>,
    secrets: &[(String, String)],
    forwards: Vec<Bound>,
) -> Result<Finished, Error> {
    let lines: Vec<String> = forwards.iter().map(ToString::to_string).collect();
    let _serving = crate::forward::start(target, forwards).await?;
    for line in lines {
        eprintln!("hutch: forwarding {line}");
    }
    crate::net::exec::run_audited(target, options, session, secrets).await
}

/// Deletes a throw-away VM, whatever state it got to.
fn clean_up(state: &StateDir, backend: &dyn Backend, name: &VmName) {
    if let Ok(record) = state.load(name)
        && let Err(e) = lifecycle::destroy(state, backend, &record)
    {
        eprintln!("hutch: could not delete the throw-away VM {name}: {e}; remove it with `hutch rm -f {name}`");
        return;
    }
    let _ = state.remove_vm_dir(name);
}

/// A fresh name for a throw-away VM.
fn throwaway_name() -> VmName {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("run-{}-{:06x}", std::process::id(), nanos & 0xff_ffff);
    VmName::new(&name).expect("run-<digits>-<hex> is a valid VM name")
}
