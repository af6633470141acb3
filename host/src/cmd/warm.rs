//! `hutch warm [--count N] [--wait] [settings…]`: keep N VMs booted and
//! prepared for this project, so `hutch run --rm` takes one instead of
//! booting (see `crate::warm`). `--count 0` drops them.

use crate::cli::WarmArgs;
use crate::error::Error;
use crate::plan::Plan;
use crate::state::{PoolState, StateDir};
use crate::warm::pool::{self, members};
use crate::warm::target::{self, Flags, Target};
use crate::warm::{keeper, key};

/// How long `--count 0` gives a keeper to stop before it is killed.
const KEEPER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `hutch warm`; returns the exit code.
pub async fn run(args: WarmArgs) -> Result<u8, Error> {
    if args.up.name.is_some() {
        return Err(Error::Usage("hutch warm names its VMs itself (a run takes them by their settings): drop --name".into()));
    }
    if !args.up.forward.is_empty() {
        return Err(Error::Usage("--forward belongs to the run that takes a VM: pass it to `hutch run --rm`".into()));
    }
    let state = StateDir::from_env()?;
    let plan = Plan::new(&args.up, &state, None, true)?;
    let here = match &plan.spec.workspace {
        Some(workspace) => workspace.clone(),
        None => std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?,
    };
    let project = target::project_id(&here, plan.spec.workspace.is_some());
    let count = args.count.or(plan.config.warm_count.value).unwrap_or(1);
    if count == 0 {
        Target::remove(&state, &project)?;
        // The keeper and whatever it runs for a boot in progress.
        keeper::daemon(&state, &project).terminate_group(KEEPER_GRACE);
        let dropped = members(&state, &project).iter().filter(|vm| pool::drop_vm(&state, vm, true)).count();
        println!("dropped {dropped} ready VM{} of {}", plural(dropped), here.display());
        return Ok(0);
    }
    Target::new(&here, Flags::of(&args.up), count).save(&state, &project)?;
    if !args.wait {
        keeper::spawn(&state, &project, &here)?;
        println!(
            "warming {count} VM{} for {} in the background (`hutch ls` lists them; `hutch warm --wait` waits for them)",
            plural(count as usize),
            here.display()
        );
        return Ok(0);
    }
    // A keeper already at work finishes its boot first; then this process
    // keeps the pool itself, in the foreground, and says what failed.
    let background = keeper::daemon(&state, &project);
    while background.running() {
        background.wait_exit(std::time::Duration::from_secs(3600));
    }
    keeper::keep(&state, &project).await?;
    let key = key::of(plan.backend.as_ref(), &plan.spec);
    let ready =
        members(&state, &project).iter().filter(|vm| vm.pool.as_ref().is_some_and(|p| p.key == key && p.state == PoolState::Ready)).count();
    println!("{ready} ready VM{} for {}", plural(ready), here.display());
    Ok(0)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
