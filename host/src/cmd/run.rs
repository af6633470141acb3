//! `hutch run [--rm] -- CMD…`: boot a VM, run one command, exit with its code.
//!
//! With `--rm` the VM is a throw-away clone of the base image under a fresh
//! name (so concurrent runs never share one), deleted when the command ends —
//! also when hutch gets Ctrl-C, SIGTERM or SIGHUP, during boot or during the
//! command (which first receives the signal, as with `hutch exec`). When the
//! project's warm pool holds a ready VM of exactly these settings, that VM
//! is taken instead of booting one (`--cold` says not to; see `crate::warm`),
//! and afterwards the pool is topped up again in the background.

use super::audited::{self, Audited};
use super::termination::termination;
use crate::backend::Backend;
use crate::cli::RunArgs;
use crate::config::env_pairs;
use crate::error::Error;
use crate::exec::{self, Finished, Options, SessionSpec};
use crate::forward::Bound;
use crate::lifecycle::{self, LifecycleError, Up};
use crate::plan::Plan;
use crate::sessions::SessionError;
use crate::state::{StateDir, VmLock, VmName, VmRecord};
use crate::target::Target;
use crate::warm;
use crate::warm::target::{Flags, Target as PoolTarget};

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
    let backend = plan.backend.as_ref();
    // A name of the user's own asks for a VM made for it.
    let key = (args.rm && !args.cold && args.up.name.is_none()).then(|| warm::key::of(backend, &plan.spec));

    let (name, lock) = loop {
        let taken = key.as_deref().and_then(|key| warm::pool::take(&state, backend, key));
        let (name, lock, ready) = match taken {
            Some(taken) => (taken.record.name.clone(), taken.lock, Some(taken.record)),
            None => (plan.spec.name.clone(), VmLock::acquire(&state.create_vm_dir(&plan.spec.name)?)?, None),
        };
        let warm = ready.is_some();
        let booted = tokio::select! {
            booted = boot(&state, &plan, ready) => booted,
            signal = termination() => Err(Error::Interrupted(signal?)),
        };
        match booted {
            Ok(()) => break (name, lock),
            Err(error) => {
                if args.rm {
                    clean_up(&state, backend, &name);
                }
                // A ready VM that turned out broken (its agent gone): the
                // next one, or a cold boot, serves the run instead.
                if warm && unusable(&error) {
                    tracing::info!("{name}, a ready VM, could not be used ({error}); trying another");
                    continue;
                }
                return Err(error);
            }
        }
    };
    // A kept VM is free for other hutch commands as soon as it is up; a
    // throw-away one stays locked until it is gone.
    let _held = if args.rm { Some(lock) } else { None };

    let result = async {
        let target = Target::for_vm(state.clone(), &name)?;
        let mut options = args.exec.options(args.command.clone(), target.default_cwd());
        options.add_env(env_pairs(&plan.config.env.value));
        let secrets = crate::net::exec::real_values(&plan.config.network);
        // A throw-away VM cannot keep a session (refused above for the flags;
        // the configuration's default does not apply to it).
        let session = args.session.spec(&options, plan.config.keep.value && !args.rm)?;
        let session = session.as_ref();
        // `up` has just made any --ro snapshot: no re-sync first.
        let audited = Audited { target: &target, secrets: &secrets, refresh_snapshot: None };
        if forwards.is_empty() {
            audited::connect_and_run(&audited, options, session).await
        } else {
            run_forwarding(&audited, options, session, forwards).await
        }
    }
    .await;
    if args.rm {
        // The guest's commits come back before the VM goes (see `crate::git`).
        if let Ok(record) = state.load(&name) {
            crate::git::take::take_back(&state, &record).await;
        }
        let begin = std::time::Instant::now();
        clean_up(&state, backend, &name);
        tracing::debug!("{name} deleted in {:?}", begin.elapsed());
        top_up(&state, &plan, &args);
    }
    exec::report::report(result, args.exec.json, Error::exit_code)
}

/// Boots (or finds) the VM, or readies the one taken from the warm pool;
/// brings a `--ro` snapshot up to date, and runs the runtime hook in a
/// fresh VM (see `lifecycle::up`, `lifecycle::resume_ready`).
async fn boot(state: &StateDir, plan: &Plan, ready: Option<VmRecord>) -> Result<(), Error> {
    let backend = plan.backend.as_ref();
    let (network, hook) = (&plan.config.network, &plan.config.runtime_hook.value);
    if let Some(record) = ready {
        tracing::info!("{} taken from the warm pool", record.name);
        return Ok(lifecycle::resume_ready(state, backend, record, network, hook).await?);
    }
    lifecycle::up(state, backend, &plan.spec, network, hook, |up| match up {
        Up::Started(record, took) => {
            tracing::info!("{} booted in {:.1} s ({})", record.name, took.as_secs_f64(), backend.notes(record).join("; "));
        }
        Up::AlreadyUp(record) => tracing::info!("{} was already up", record.name),
    })
    .await?;
    Ok(())
}

/// Whether readying a VM from the pool failed because of the VM (its agent
/// does not answer, or fails), rather than because of the project or the
/// run (a hook, a policy), which a cold boot would hit as well.
fn unusable(error: &Error) -> bool {
    matches!(error, Error::Lifecycle(LifecycleError::Connect(_) | LifecycleError::Call(_) | LifecycleError::Workspace(_)))
}

/// After a throw-away run in a project with a warm pool: the pool is
/// topped up in the background. `[warm] count = N` in the configuration
/// sets the pool to N VMs of this run's settings (the latest run's settings
/// are the ones kept); otherwise a pool made by `hutch warm` keeps its own.
fn top_up(state: &StateDir, plan: &Plan, args: &RunArgs) {
    let here = match &plan.spec.workspace {
        Some(workspace) => workspace.clone(),
        None => match std::env::current_dir() {
            Ok(dir) => dir,
            Err(_) => return,
        },
    };
    let project = warm::target::project_id(&here, plan.spec.workspace.is_some());
    let topped = (|| {
        let standing = PoolTarget::load(state, &project)?;
        let wanted = match plan.config.warm_count.value {
            Some(count) => Some(PoolTarget::new(&here, Flags::of(&args.up), count)),
            None => standing.clone(),
        };
        if wanted != standing {
            match &wanted {
                Some(target) if target.count > 0 => target.save(state, &project)?,
                _ => PoolTarget::remove(state, &project)?,
            }
        }
        if wanted.is_some() || standing.is_some() {
            warm::keeper::spawn(state, &project, &here)?;
        }
        Ok::<_, warm::WarmError>(())
    })();
    if let Err(e) = topped {
        eprintln!("hutch: the warm pool of {} is not topped up: {e}", here.display());
    }
}

/// Runs the command while `forwards` are served (their lines go to stderr:
/// stdout is the command's).
async fn run_forwarding(
    audited: &Audited<'_>,
    options: Options,
    session: Option<&SessionSpec>,
    forwards: Vec<Bound>,
) -> Result<Finished, Error> {
    let lines: Vec<String> = forwards.iter().map(ToString::to_string).collect();
    let _serving = crate::forward::start(audited.target, forwards).await?;
    for line in lines {
        eprintln!("hutch: forwarding {line}");
    }
    audited::connect_and_run(audited, options, session).await
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
#[allow(clippy::expect_used, reason = "run-<digits>-<hex> is always a valid VM name")]
fn throwaway_name() -> VmName {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("run-{}-{:06x}", std::process::id(), nanos & 0xff_ffff);
    VmName::new(&name).expect("run-<digits>-<hex> is a valid VM name")
}
