//! `hutch exec -- CMD…`: run a command through an agent and leave with its
//! exit code.

use std::io::IsTerminal;
use std::time::Instant;

use serde_json::json;

use crate::cli::{ExecArgs, ExecFlags};
use crate::config::{Config, env_pairs};
use crate::error::Error;
use crate::exec::{self, Finished, Options};
use crate::target::Target;

/// Runs `hutch exec`; returns the exit code.
pub async fn run(args: ExecArgs) -> Result<u8, Error> {
    let result = async {
        let target = Target::resolve(args.name.as_ref(), &args.agent)?;
        let mut options = options(&args.flags, args.command.clone(), target.default_cwd());
        let secrets = add_configured_env(&mut options)?;
        // One connection for the re-sync of a --ro snapshot and the command.
        let mut client = target.connect().await?;
        target.sync_snapshot(&mut client, !args.flags.json).await?;
        let began = Instant::now();
        let result = exec::run(&mut client, &options).await;
        crate::net::exec::record(&target, &options, &result, began.elapsed(), &secrets);
        result
    }
    .await;
    report(result, args.flags.json)
}

/// Runs `options` on `target`, and writes it into the VM's audit log.
pub async fn run_on(target: &Target, options: &Options) -> Result<Finished, Error> {
    let began = Instant::now();
    let result = async { exec::run(&mut target.connect().await?, options).await }.await;
    let cwd = std::env::current_dir().unwrap_or_default();
    let secrets = Config::load(&cwd).map(|c| crate::net::exec::real_values(&c.network)).unwrap_or_default();
    crate::net::exec::record(target, options, &result, began.elapsed(), &secrets);
    result
}

/// Turns an exec's result into hutch's exit code, printing what the user
/// should see (and the JSON report when asked).
pub fn report(result: Result<Finished, Error>, json: bool) -> Result<u8, Error> {
    match result {
        Ok(finished) => {
            let code = finished.outcome.exit_code();
            if let Some(message) = finished.outcome.message() {
                eprintln!("hutch: {message}");
            }
            if json {
                println!("{}", finished.outcome.to_json(finished.captured));
            }
            Ok(code)
        }
        Err(error) if json => {
            // Scripts that asked for JSON get it even when hutch fails.
            println!("{}", json!({ "exit_code": error.exit_code(), "error": { "kind": "HUTCH", "message": error.to_string() } }));
            Err(error)
        }
        Err(error) => Err(error),
    }
}

/// Adds the `env` entries of the configuration in force here (flags win),
/// leaving out any that would carry a secret's real value into the guest;
/// returns the secrets' real values (for the audit log's redaction).
pub fn add_configured_env(options: &mut Options) -> Result<Vec<(String, String)>, Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?;
    let config = Config::load(&cwd)?;
    for (key, value) in env_pairs(&config.env.value) {
        options.env.entry(key).or_insert(value);
    }
    let secrets = crate::net::exec::real_values(&config.network);
    crate::net::exec::scrub_env(&mut options.env, &secrets);
    Ok(secrets)
}

/// Options for one exec from the command-line flags.
pub fn options(flags: &ExecFlags, argv: Vec<String>, default_cwd: Option<String>) -> Options {
    // Like `ssh` and `docker exec -it`: a terminal when both ends are terminals.
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal() && !flags.json;
    Options {
        argv,
        env: flags.env.iter().cloned().collect(),
        cwd: flags.cwd.clone().or(default_cwd).unwrap_or_default(),
        tty: flags.tty || (interactive && !flags.no_tty),
        timeout: flags.timeout,
        capture: flags.json,
        no_stdin: flags.no_stdin,
    }
}
