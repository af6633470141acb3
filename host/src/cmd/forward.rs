//! `hutch forward [--name NAME | --addr ADDR] HOSTPORT[:GUESTPORT]…`: forward
//! host ports to guest ports until Ctrl-C or SIGTERM.

use hutch_proto::v1::InfoRequest;

use crate::cli::ForwardArgs;
use crate::error::Error;
use crate::forward::{self, Bound, ForwardError, Serving};
use crate::target::Target;

/// Runs `hutch forward`; returns the exit code (0 once stopped by a signal).
pub async fn run(args: ForwardArgs) -> Result<u8, Error> {
    let bound = forward::bind(&args.ports)?;
    let target = Target::resolve(args.name.as_ref(), &args.agent)?;
    let lines: Vec<String> = bound.iter().map(ToString::to_string).collect();
    let _serving = start(&target, bound).await?;
    for line in lines {
        println!("{line}");
    }
    let signal = termination().await?;
    tracing::debug!("stopping on {signal}");
    Ok(0)
}

/// Serves `bound` through `target`'s agent (checked first: it must answer and
/// support forwarding). Forwarding lasts as long as the returned value.
pub async fn start(target: &Target, bound: Vec<Bound>) -> Result<Serving, Error> {
    let mut client = target.connect().await?;
    let info = client.info(InfoRequest {}).await.map_err(Error::from_status)?.into_inner();
    if !info.capabilities.iter().any(|c| c == forward::CAPABILITY) {
        return Err(ForwardError::Unsupported { addr: target.addr.to_string(), version: info.version }.into());
    }
    Ok(forward::serve(bound, &client)?)
}

/// Resolves with the name of the first SIGINT, SIGTERM or SIGHUP.
async fn termination() -> Result<&'static str, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind| signal(kind).map_err(|e| Error::local("listening for signals", e));
    let (mut int, mut term, mut hup) = (listen(SignalKind::interrupt())?, listen(SignalKind::terminate())?, listen(SignalKind::hangup())?);
    Ok(tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    })
}
