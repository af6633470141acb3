//! `hutch rm [-f] [NAME]`: delete a VM and its state.

use crate::backend::{self, VmState};
use crate::cli::RmArgs;
use crate::error::Error;
use crate::lifecycle;
use crate::state::{StateDir, VmLock};
use crate::target::vm_name;

/// Runs `hutch rm`; returns the exit code.
pub async fn run(args: RmArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let name = vm_name(&state, args.name.name())?;
    let record = state.load(&name)?;
    let _lock = VmLock::acquire(&state.vm_dir(&name))?;
    let backend = backend::for_kind(record.kind(), &state)?;
    if !args.force && backend.state(&record, &state.vm_dir(&name))? == VmState::Running {
        return Err(Error::Usage(format!("{name} is running: stop it first with `hutch down {name}`, or use `hutch rm -f {name}`")));
    }
    crate::git::take::take_back(&state, &record).await;
    lifecycle::destroy(&state, backend.as_ref(), &record)?;
    println!("{name} is deleted");
    Ok(0)
}
