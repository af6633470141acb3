//! `hutch exec -- CMD…`: run a command through an agent and leave with its
//! exit code.

use super::audited::{self, Audited};
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
        let secrets = crate::net::exec::real_values(&config.network);
        let session = args.session.spec(&options, config.keep.value)?;
        // One connection for the re-sync of a --ro snapshot and the command.
        let audited = Audited { target: &target, secrets: &secrets, refresh_snapshot: Some(!args.flags.json) };
        audited::connect_and_run(&audited, options, session.as_ref()).await
    }
    .await;
    exec::report::report(result, args.flags.json, Error::exit_code)
}
