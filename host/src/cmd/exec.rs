//! `hutch exec -- CMD…`: run a command through the agent and leave with its
//! exit code.

use std::io::IsTerminal;

use serde_json::json;

use crate::cli::ExecArgs;
use crate::error::Error;
use crate::exec::{self, Options};
use crate::transport;

/// Runs `hutch exec`; returns the exit code.
pub async fn run(args: ExecArgs) -> Result<u8, Error> {
    let options = options(&args);
    let result = async {
        let mut client = transport::connect(args.agent.addr()?, args.agent.token()?).await?;
        exec::run(&mut client, &options).await
    }
    .await;
    match result {
        Ok(finished) => {
            let code = finished.outcome.exit_code();
            if let Some(message) = finished.outcome.message() {
                eprintln!("hutch: {message}");
            }
            if args.json {
                println!("{}", finished.outcome.to_json(finished.captured));
            }
            Ok(code)
        }
        Err(error) if args.json => {
            // Scripts that asked for JSON get it even when hutch fails.
            println!("{}", json!({ "exit_code": error.exit_code(), "error": { "kind": "HUTCH", "message": error.to_string() } }));
            Err(error)
        }
        Err(error) => Err(error),
    }
}

fn options(args: &ExecArgs) -> Options {
    // Like `ssh` and `docker exec -it`: a terminal when both ends are terminals.
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal() && !args.json;
    Options {
        argv: args.command.clone(),
        env: args.env.iter().cloned().collect(),
        cwd: args.cwd.clone().unwrap_or_default(),
        tty: args.tty || (interactive && !args.no_tty),
        timeout: args.timeout,
        capture: args.json,
        no_stdin: args.no_stdin,
    }
}
