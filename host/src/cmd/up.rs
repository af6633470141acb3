//! `hutch up`: create (if needed) and start a VM, and wait for its agent.

use crate::cli::UpArgs;
use crate::error::Error;
use crate::lifecycle;
use crate::plan::Plan;
use crate::state::{StateDir, VmLock};

/// Runs `hutch up`; returns the exit code.
pub async fn run(args: UpArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let plan = Plan::new(&args, &state, None, false)?;
    let _lock = VmLock::acquire(&state.create_vm_dir(&plan.spec.name)?)?;
    let backend = plan.backend.as_ref();
    lifecycle::up(&state, backend, &plan.spec, &plan.config.network, &plan.config.runtime_hook.value, |up| up.announce(backend)).await?;
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
