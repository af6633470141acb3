//! `hutch run [--rm] -- CMD…`: boot a VM, run one command, exit with its code.
//!
//! With `--rm` the VM is a throw-away clone of the base image under a fresh
//! name (so concurrent runs never share one), deleted when the command ends —
//! also when hutch gets Ctrl-C, SIGTERM or SIGHUP, during boot or during the
//! command (which first receives the signal, as with `hutch exec`).

use tokio::signal::unix::{SignalKind, signal};

use crate::backend::{self, Backend};
use crate::cli::RunArgs;
use crate::cmd::exec::{options, report, run_on};
use crate::cmd::up::spec;
use crate::error::Error;
use crate::lifecycle::{self, Outcome};
use crate::state::{StateDir, VmLock, VmName};
use crate::target::Target;

/// Runs `hutch run`; returns the exit code.
pub async fn run(args: RunArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let backend = backend::for_kind(args.up.backend, &state)?;
    let name = if args.rm { Some(args.up.name.clone().unwrap_or_else(throwaway_name)) } else { None };
    let spec = spec(&args.up, &state, backend.as_ref(), name, args.rm)?;
    let lock = VmLock::acquire(&state.create_vm_dir(&spec.name)?)?;

    let booted = tokio::select! {
        booted = lifecycle::ensure_running(&state, backend.as_ref(), &spec) => booted,
        signal = termination() => Err(Error::Interrupted(signal?)),
    };
    match booted {
        Ok(Outcome::Started(record, took)) => {
            tracing::info!("{} booted in {:.1} s ({})", record.name, took.as_secs_f64(), backend.notes(&record).join("; "));
        }
        Ok(Outcome::AlreadyUp(record)) => tracing::info!("{} was already up", record.name),
        Err(error) => {
            if args.rm {
                clean_up(&state, backend.as_ref(), &spec.name);
            }
            return Err(error);
        }
    }
    // A kept VM is free for other hutch commands as soon as it is up; a
    // throw-away one stays locked until it is gone.
    let _held = if args.rm { Some(lock) } else { None };

    if let Err(error) = crate::cmd::up::initial_sync(&state, &spec.name).await {
        if args.rm {
            clean_up(&state, backend.as_ref(), &spec.name);
        }
        return Err(error);
    }
    let target = Target::for_vm(state.clone(), &spec.name)?;
    let options = options(&args.exec, args.command.clone(), target.default_cwd());
    let result = run_on(&target, &options).await;
    if args.rm {
        clean_up(&state, backend.as_ref(), &spec.name);
    }
    report(result, args.exec.json)
}

/// Deletes a throw-away VM, whatever state it got to.
fn clean_up(state: &StateDir, backend: &dyn Backend, name: &VmName) {
    if let Ok(record) = state.load(name) {
        if let Err(e) = lifecycle::destroy(state, backend, &record) {
            eprintln!("hutch: could not delete the throw-away VM {name}: {e}; remove it with `hutch rm -f {name}`");
            return;
        }
    }
    let _ = state.remove_vm_dir(name);
}

/// A fresh name for a throw-away VM.
fn throwaway_name() -> VmName {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("run-{}-{:06x}", std::process::id(), nanos & 0xff_ffff);
    VmName::new(&name).expect("run-<digits>-<hex> is a valid VM name")
}

/// Resolves with the name of the first SIGINT, SIGTERM or SIGHUP.
async fn termination() -> Result<nix::sys::signal::Signal, Error> {
    use nix::sys::signal::Signal;
    let listen = |kind| signal(kind).map_err(|e| Error::local("listening for signals", e));
    let (mut int, mut term, mut hup) = (listen(SignalKind::interrupt())?, listen(SignalKind::terminate())?, listen(SignalKind::hangup())?);
    Ok(tokio::select! {
        _ = int.recv() => Signal::SIGINT,
        _ = term.recv() => Signal::SIGTERM,
        _ = hup.recv() => Signal::SIGHUP,
    })
}
