//! `hutch logs TAG [-f]`: what a session's buffer holds, then (`-f`) its
//! live output until it ends.

use hutch_proto::v1::AttachMode;

use crate::cli::LogsArgs;
use crate::error::Error;
use crate::exec::Outcome;
use crate::exec::attach::{AttachOptions, attach};

/// Runs `hutch logs`; exits 0 (141 when stdout closed early), whatever the
/// session's own code (`hutch wait` gives that).
pub async fn run(args: LogsArgs) -> Result<u8, Error> {
    let target = args.target.vm.target()?;
    let mut client = target.connect().await?;
    let options = AttachOptions { session: args.target.tag, mode: AttachMode::AttachLogs, force: false, follow: args.follow };
    let finished = attach(&mut client, &options).await?;
    Ok(match finished.outcome {
        outcome @ Outcome::BrokenPipe => outcome.exit_code(),
        _ => 0,
    })
}
