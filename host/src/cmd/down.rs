//! `hutch down [NAME]`: stop a VM; its disk and record stay for the next `up`.

use crate::backend;
use crate::cli::NameArg;
use crate::error::Error;
use crate::lifecycle;
use crate::state::{StateDir, VmLock};
use crate::target::vm_name;

/// Runs `hutch down`; returns the exit code.
pub async fn run(args: NameArg) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let name = vm_name(&state, args.name())?;
    let mut record = state.load(&name)?;
    let _lock = VmLock::acquire(&state.vm_dir(&name))?;
    let backend = backend::for_kind(record.kind(), &state)?;
    // The guest's last changes reach the host before it stops.
    crate::sync::live::daemon::stop(&state.vm_dir(&name)).await;
    // The guest's commits come back before the VM goes (see `crate::git`).
    crate::git::take::take_back(&state, &record).await;
    lifecycle::stop(&state, backend.as_ref(), &mut record)?;
    println!("{name} is stopped");
    Ok(0)
}
