//! `hutch exec -- CMD…`: run a command through an agent and leave with its
//! exit code.

use crate::cli::ExecArgs;
use crate::config::{Config, env_pairs};
use crate::error::Error;
use crate::exec;

/// Runs `hutch exec`; returns the exit code.
pub async fn run(args: ExecArgs) -> Result<u8, Error> {
    let result = async {
        let target = args.agent.target(args.name.as_ref())?;
        let mut options = args.flags.options(args.command.clone(), target.default_cwd());
        let cwd = std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?;
        let config = Config::load(&cwd)?;
        options.add_env(env_pairs(&config.env.value));
        // A secret's real value never rides into the guest on an exec's environment.
        let secrets = crate::net::exec::real_values(&config.network);
        crate::net::exec::scrub_env(&mut options.env, &secrets);
        crate::net::exec::keep_network(&target);
        options.ask = crate::net::exec::ask_for(&target);
        let session = args.session.spec(&options, config.keep.value)?;
        // One connection for the re-sync of a --ro snapshot and the command.
        let mut client = target.connect().await?;
        if let Some(record) = target.record() {
            crate::sync::refresh_snapshot(&mut client, record, !args.flags.json).await?;
        }
        // A synced workspace: the host's edits are in the guest before the
        // command starts, and the guest's are on the host when it returns.
        let synced = target.record().filter(|r| r.sync).map(|r| crate::sync::live::daemon::sync_dir(&target_state_dir(r)));
        if let Some(dir) = &synced {
            crate::sync::live::run::flush_or_warn(dir).await;
        }
        let began = std::time::Instant::now();
        let result = exec::run_as(&mut client, &options, session.as_ref()).await.map_err(Error::from);
        if let Some(dir) = &synced {
            crate::sync::live::run::flush_or_warn(dir).await;
        }
        crate::net::exec::record(&target, &options, &result, began.elapsed(), &secrets);
        crate::git::take::after_exec(&target, result.as_ref().ok()).await;
        result
    }
    .await;
    exec::report::report(result, args.flags.json, Error::exit_code)
}

/// The folder of a VM in the state directory in force.
fn target_state_dir(record: &crate::state::VmRecord) -> std::path::PathBuf {
    crate::state::StateDir::from_env().map(|s| s.vm_dir(&record.name)).unwrap_or_default()
}
