//! `hutch forward [--name NAME | --addr ADDR] HOSTPORT[:GUESTPORT]…`: forward
//! host ports to guest ports until Ctrl-C or SIGTERM.

use super::termination::termination;
use crate::cli::ForwardArgs;
use crate::error::Error;
use crate::forward;

/// Runs `hutch forward`; returns the exit code (0 once stopped by a signal).
pub async fn run(args: ForwardArgs) -> Result<u8, Error> {
    let bound = forward::bind(&args.ports)?;
    let target = args.agent.target(args.name.as_ref())?;
    let lines: Vec<String> = bound.iter().map(ToString::to_string).collect();
    let _serving = forward::start(&target, bound).await?;
    for line in lines {
        println!("{line}");
    }
    let signal = termination().await?;
    tracing::debug!("stopping on {signal}");
    Ok(0)
}
