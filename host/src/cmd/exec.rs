//! `hutch exec -- CMD…`: run a command through an agent and leave with its
//! exit code.

use std::io::IsTerminal;

use serde_json::json;

use crate::cli::{ExecArgs, ExecFlags, SessionFlags};
use crate::config::{Config, env_pairs};
use crate::error::Error;
use crate::exec::{self, Finished, Options, Outcome, SessionSpec};
use crate::sessions::{SessionError, printable};
use crate::target::Target;

/// Runs `hutch exec`; returns the exit code.
pub async fn run(args: ExecArgs) -> Result<u8, Error> {
    let result = async {
        let target = Target::resolve(args.name.as_ref(), &args.agent)?;
        let mut options = options(&args.flags, args.command.clone(), target.default_cwd());
        let config = add_configured_env(&mut options)?;
        let session = session(&args.session, &options, config.keep.value)?;
        // One connection for the re-sync of a --ro snapshot and the command.
        let mut client = target.connect().await?;
        target.sync_snapshot(&mut client, !args.flags.json).await?;
        match &session {
            None => exec::run(&mut client, &options).await,
            Some(session) => exec::run_kept(&mut client, &options, session).await,
        }
    }
    .await;
    report(result, args.flags.json)
}

/// Runs `options` on `target`.
pub async fn run_on(target: &Target, options: &Options) -> Result<Finished, Error> {
    run_session_on(target, options, None).await
}

/// Runs `options` on `target`, as a session when `session` says so.
pub async fn run_session_on(target: &Target, options: &Options, session: Option<&SessionSpec>) -> Result<Finished, Error> {
    let mut client = target.connect().await?;
    match session {
        None => exec::run(&mut client, options).await,
        Some(session) => exec::run_kept(&mut client, options, session).await,
    }
}

/// The session the flags ask for, if any: `--detach`, `--keep`, or the
/// configuration's `keep` for a command on a terminal.
pub fn session(flags: &SessionFlags, options: &Options, keep_by_default: bool) -> Result<Option<SessionSpec>, Error> {
    let keep = flags.keep || (keep_by_default && options.tty && !flags.no_keep);
    if !flags.detach && !keep {
        if flags.tag.is_some() {
            return Err(SessionError::NotASession("--tag").into());
        }
        if flags.buffer.is_some() {
            return Err(SessionError::NotASession("--buffer").into());
        }
        return Ok(None);
    }
    Ok(Some(SessionSpec { name: flags.tag.clone().unwrap_or_default(), detach: flags.detach, buffer: flags.buffer.unwrap_or(0) }))
}

/// Turns an exec's result into hutch's exit code, printing what the user
/// should see (and the JSON report when asked).
pub fn report(result: Result<Finished, Error>, json: bool) -> Result<u8, Error> {
    match result {
        Ok(finished) => {
            let code = finished.outcome.exit_code();
            if let Outcome::Detached(detached) = &finished.outcome
                && detached.reason == hutch_proto::v1::DetachReason::DetachAtStart as i32
                && !json
            {
                // `--detach`: the tag, for `hutch attach` and for scripts.
                println!("{}", printable(&detached.session));
            }
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

/// Adds the `env` entries of the configuration in force here (flags win);
/// returns that configuration.
pub fn add_configured_env(options: &mut Options) -> Result<Config, Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?;
    let config = Config::load(&cwd)?;
    for (key, value) in env_pairs(&config.env.value) {
        options.env.entry(key).or_insert(value);
    }
    Ok(config)
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
