//! `hutch reset [NAME]`: delete a VM and start a fresh clone of its image
//! under the same name, with the same settings (its network included).

use crate::backend::{self, VmSpec};
use crate::cli::NameArg;
use crate::error::Error;
use crate::lifecycle;
use crate::state::{StateDir, VmLock};
use crate::target::vm_name;

/// Runs `hutch reset`; returns the exit code.
pub async fn run(args: NameArg) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let name = vm_name(&state, args.name())?;
    let record = state.load(&name)?;
    let _lock = VmLock::acquire(&state.vm_dir(&name))?;
    let backend = backend::for_kind(record.kind(), &state)?;
    let spec = VmSpec::like(&record, name.clone());
    crate::git::take::take_back(&state, &record).await;
    crate::mux::stop(&state.vm_dir(&name));
    crate::net::daemon::stop(&state.vm_dir(&name));
    crate::git::watch::stop(&state.vm_dir(&name));
    crate::sync::live::daemon::kill(&state.vm_dir(&name));
    // The new VM's copy is made afresh from the host.
    let _ = std::fs::remove_dir_all(crate::sync::live::daemon::sync_dir(&state.vm_dir(&name)));
    backend.delete(&record, &state.vm_dir(&name))?;
    // The new VM starts from a clean project: what the old one left goes first.
    crate::workspace::remove_links(&state, &mut record.clone());
    std::fs::remove_file(state.vm_dir(&name).join("vm.json")).map_err(|e| Error::local("removing the old record", e))?;
    lifecycle::ensure_running(&state, backend.as_ref(), &spec).await?.announce(backend.as_ref());
    crate::net::daemon::restore(&state, &name)?;
    Ok(0)
}
