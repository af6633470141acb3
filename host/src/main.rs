//! The `hutch` binary: parse, run one subcommand, exit with its code.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use hutch::cli::{Cli, Command};
use hutch::exec::terminal::RawMode;
use hutch::exit;

fn main() -> ExitCode {
    // `hutch exec` skips building the whole command tree (see cli::fast).
    let parsed = hutch::cli::parse_exec(std::env::args_os()).map_or_else(Cli::try_parse, Ok);
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's own exit code (2) could be mistaken for the command's.
            let _ = e.print();
            return ExitCode::from(exit::HUTCH_FAILED);
        }
    };
    // Before any thread exists: a threaded process cannot enter a user namespace.
    if let Command::GuardExec(args) = &cli.command {
        let error = hutch::git::namespace::run(&args.guard, &args.command[0], &args.command[1..]);
        eprintln!("hutch guard-exec: {error}");
        return ExitCode::from(exit::HUTCH_FAILED);
    }
    init_logging(cli.verbose);
    hutch::untrusted::deadline::source(hutch::config::deadlines_here);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hutch: cannot start the async runtime: {e}");
            return ExitCode::from(exit::HUTCH_FAILED);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => hutch::cmd::up::run(args).await,
            Command::Exec(args) => hutch::cmd::exec::run(args).await,
            Command::Run(args) => hutch::cmd::run::run(args).await,
            Command::Shell(args) => hutch::cmd::shell::run(args).await,
            Command::Down(args) => hutch::cmd::down::run(args).await,
            Command::Rm(args) => hutch::cmd::rm::run(args).await,
            Command::Reset(args) => hutch::cmd::reset::run(args).await,
            Command::Warm(args) => hutch::cmd::warm::run(args).await,
            Command::Fork(args) => hutch::cmd::fork::run(args).await,
            Command::WarmKeeper(args) => hutch::warm::keeper::run(&args.project).await,
            Command::Ls(args) => hutch::cmd::ls::run(args).await,
            Command::Config(args) => hutch::cmd::config::run(args).await,
            Command::Doctor(args) => hutch::cmd::doctor::run(args).await,
            Command::Completions(args) => hutch::cmd::completions::completions(args).await,
            Command::Man => hutch::cmd::completions::man().await,
            Command::Ping(args) => hutch::cmd::ping::run(args).await,
            Command::Forward(args) => hutch::cmd::forward::run(args).await,
            Command::Attach(args) => hutch::cmd::attach::run(args).await,
            Command::Ps(args) => hutch::cmd::ps::run(args).await,
            Command::Logs(args) => hutch::cmd::logs::run(args).await,
            Command::Wait(args) => hutch::cmd::wait::run(args).await,
            Command::Kill(args) => hutch::cmd::kill::run(args).await,
            Command::Agent(command) => hutch::cmd::agent::run(command).await,
            Command::Image(command) => hutch::cmd::image::run(command).await,
            Command::Sync(args) => hutch::cmd::sync::run(args).await,
            Command::Allow(args) => hutch::cmd::allow::allow(args).await,
            Command::Deny(args) => hutch::cmd::allow::deny(args).await,
            Command::Diff(args) => hutch::cmd::diff::run(args).await,
            Command::Mux(args) => Ok(hutch::mux::serve::run(&args.name).await?),
            Command::Net(args) => Ok(hutch::net::daemon::run(&args.name).await?),
            Command::Audit(args) => hutch::cmd::audit::run(args).await,
            Command::Log(args) => hutch::cmd::audit::deprecated_name(args).await,
            Command::Mcp(args) => hutch::cmd::mcp::run(args).await,
            Command::Fetch(args) => hutch::cmd::fetch::run(args).await,
            Command::GitBridge(args) => hutch::cmd::git_bridge::run(&args.service).await,
            Command::GitWatch(args) => {
                let state = hutch::state::StateDir::from_env()?;
                Ok(hutch::git::watch::run(&state, &args.name)?)
            }
            Command::GuardExec(_) => unreachable!("handled before the runtime starts"),
            Command::SyncDaemon(args) => Ok(hutch::sync::live::daemon::run(&args.name).await?),
        }
    });
    RawMode::restore();
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            // Errors quote the guest (statuses, paths, consoles): each quote is
            // escaped where it is made, and the whole line once more here, so
            // nothing the guest sent acts on this terminal.
            eprintln!("hutch: {}", hutch::untrusted::text::escaped(&error.to_string()));
            if let Some(hint) = error.hint() {
                eprintln!("hint: {}", hutch::untrusted::text::escaped_lines(&hint));
            }
            error.exit_code()
        }
    };
    // Leave now: the stdin thread may be blocked in read(2) and must not be waited for.
    std::process::exit(code.into())
}

/// Sets up logging only when asked (-v or HUTCH_LOG): `hutch exec` is on
/// scripts' hot path, and an idle subscriber still costs start-up time.
fn init_logging(verbose: u8) {
    let from_env = tracing_subscriber::EnvFilter::try_from_env("HUTCH_LOG").ok();
    let filter = match (from_env, verbose) {
        (Some(filter), _) => filter,
        (None, 0) => return,
        (None, 1) => tracing_subscriber::EnvFilter::new("debug"),
        (None, _) => tracing_subscriber::EnvFilter::new("trace"),
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
