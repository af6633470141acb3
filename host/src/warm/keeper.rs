//! A project's pool keeper: `hutch warm-keeper --project PROJECT` (hidden),
//! a host daemon (`crate::daemon`: log `warm/PROJECT/keeper.log`, locked
//! while it runs, so there is one per project) that makes the project's pool
//! what its standing order says, then leaves.
//!
//! Each round it reads the order again and resolves its settings with the
//! configuration in force ([`super::target`]), then:
//! - drops the project's pool VMs whose key is not the order's (settings
//!   changed), ready VMs that stopped running, VMs a keeper died booting, and
//!   ready VMs beyond the count;
//! - boots one more VM when the pool is short: created and marked `warming`
//!   under its lock, started, prepared for the project (and a `--ro`
//!   snapshot copied in), then marked `ready` and let go.
//!
//! It boots one VM at a time: boots are CPU-bound, and a machine running a
//! user's command should keep most of its CPU for that. It leaves when the
//! order is met or gone, or after a boot fails (the next `run --rm` or
//! `hutch warm` starts it again; `hutch warm --wait` shows what failed).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::pool::{self, members};
use super::target::{self, Target};
use super::{WarmError, key};
use crate::backend::VmSpec;
use crate::daemon::Daemon;
use crate::error::Error;
use crate::lifecycle;
use crate::plan::Plan;
use crate::state::{PoolEntry, PoolState, StateDir, VmLock, VmName};

/// Project `project`'s keeper as a daemon (its log and pid in the pool's folder).
pub fn daemon(state: &StateDir, project: &str) -> Daemon {
    Daemon::new(&target::folder(state, project), "keeper")
}

/// Starts project `project`'s keeper unless one runs; does not wait for it.
pub fn spawn(state: &StateDir, project: &str, here: &Path) -> Result<(), WarmError> {
    let keeper = daemon(state, project);
    if keeper.running() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| WarmError::io("finding the hutch executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(["warm-keeper", "--project", project]).env("HUTCH_STATE_DIR", state.root()).current_dir(here);
    match keeper.spawn_claiming(cmd) {
        Ok(_) | Err(crate::daemon::DaemonError::AlreadyRunning { .. }) => Ok(()),
        Err(e) => Err(WarmError::io(format!("starting the warm pool's keeper for {project}"), std::io::Error::other(e.to_string()))),
    }
}

/// The keeper as a daemon: [`keep`], its failure written to its log.
pub async fn run(project: &str) -> Result<u8, Error> {
    if !is_project_id(project) {
        return Err(Error::Usage(format!("{project:?} is not a warm pool's name")));
    }
    let state = StateDir::from_env()?;
    match keep(&state, project).await {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("hutch warm-keeper: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            Ok(1)
        }
    }
}

/// Makes project `project`'s pool what its order says (see the module
/// docs), holding the keeper's lock; returns at once when another keeper
/// holds it. `hutch warm --wait` calls it in the foreground.
pub async fn keep(state: &StateDir, project: &str) -> Result<(), Error> {
    let folder = target::folder(state, project);
    std::fs::create_dir_all(&folder).map_err(|e| Error::local(&format!("creating {}", folder.display()), e))?;
    let Some(_claim) = daemon(state, project).claim().map_err(|e| Error::local("taking the keeper's lock", e))? else {
        return Ok(()); // another keeper serves this pool
    };
    loop {
        let Some(target) = Target::load(state, project)? else {
            for vm in members(state, project) {
                pool::drop_vm(state, &vm, true);
            }
            return Ok(());
        };
        std::env::set_current_dir(&target.here).map_err(|e| Error::local(&format!("entering {}", target.here.display()), e))?;
        let plan = Plan::new(&target.flags.up_args(&target.here), state, None, true)?;
        let key = key::of(plan.backend.as_ref(), &plan.spec);
        if tidy(state, project, &key, target.count) >= target.count as usize {
            return Ok(());
        }
        boot_one(state, &plan, &key, project).await?;
    }
}

/// Drops what the pool should not hold (see the module docs); returns how
/// many VMs of `key` it keeps, ready or being booted.
fn tidy(state: &StateDir, project: &str, key: &str, count: u32) -> usize {
    let mut kept = 0;
    for vm in members(state, project) {
        let Some(entry) = &vm.pool else { continue };
        let dir = state.vm_dir(&vm.name);
        let keep = match entry.state {
            // Locked: being booted (by nothing but a keeper: ours holds the
            // project's lock, so a dead one's VM is unlocked and dropped).
            PoolState::Warming => matches!(VmLock::try_acquire(&dir), Ok(None)),
            PoolState::Ready => entry.key == key && kept < count as usize && still_running(state, &vm),
        };
        if keep {
            kept += 1;
        } else if pool::drop_vm(state, &vm, false) {
            eprintln!("hutch warm-keeper: dropped {}", vm.name);
        }
    }
    kept
}

/// Whether a ready VM may still be running: false only when its VM manager
/// says it is stopped or gone. A manager that cannot tell (its `list`
/// failed) is an error, never "stopped", so the VM is kept for the next round.
fn still_running(state: &StateDir, vm: &crate::state::VmRecord) -> bool {
    let Ok(backend) = crate::backend::for_kind(vm.kind(), state) else { return true };
    !matches!(backend.state(vm, &state.vm_dir(&vm.name)), Ok(crate::backend::VmState::Stopped | crate::backend::VmState::Missing))
}

/// Boots and prepares one VM for the pool; deletes it again if that fails.
async fn boot_one(state: &StateDir, plan: &Plan, key: &str, project: &str) -> Result<VmName, Error> {
    let backend = plan.backend.as_ref();
    let name = pool::new_name(key);
    let dir = state.create_vm_dir(&name)?;
    let _lock = VmLock::acquire(&dir)?;
    let spec = VmSpec { name: name.clone(), ephemeral: true, ..plan.spec.clone() };
    let begin = Instant::now();
    let booted = async {
        let mut record = backend.create(&spec, &dir)?;
        record.pool = Some(PoolEntry { key: key.to_owned(), project: project.to_owned(), state: PoolState::Warming });
        record.save(&dir)?;
        let up = lifecycle::ensure_running(state, backend, &spec).await?;
        let mut record = up.record().clone();
        if record.ro.is_some() {
            let mut client = crate::connect::connect(state, &record).await?;
            crate::sync::refresh_snapshot(&mut client, &record, true).await?;
        }
        // The network process starts now, with the project's policy as it
        // is: a run that takes this VM finds it serving, and changes it in
        // place (`net::daemon::begin` without `fresh`) when the policy or a
        // secret's value differs by then. Failing that, the run starts it.
        if let Err(e) = crate::net::daemon::ensure(state, &name, &plan.config.network, spec.workspace.as_deref(), true) {
            eprintln!("{name}: its network process did not start ({e}); the run that takes it will start it");
        }
        if let Some(entry) = &mut record.pool {
            entry.state = PoolState::Ready;
        }
        record.save(&dir)?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = booted {
        if let Ok(record) = state.load(&name) {
            let _ = lifecycle::destroy(state, backend, &record);
        }
        let _ = state.remove_vm_dir(&name);
        return Err(e);
    }
    println!(
        "{name} is ready for {} ({:.1} s)",
        spec.workspace.as_deref().unwrap_or(Path::new("-")).display(),
        begin.elapsed().as_secs_f64()
    );
    Ok(name)
}

/// What [`target::project_id`] makes: a safe folder name.
fn is_project_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 80 && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pool_names_are_taken_for_folders() {
        assert!(is_project_id(&target::project_id(Path::new("/home/me/My App"), false)));
        for bad in ["", "..", "a/b", "../../etc", "A"] {
            assert!(!is_project_id(bad), "{bad}");
        }
    }
}
