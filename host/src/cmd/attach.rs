//! `hutch attach TAG`: this terminal (or these pipes) on a running session.

use hutch_proto::v1::AttachMode;

use crate::cli::AttachArgs;
use crate::error::Error;
use crate::exec::attach::{AttachOptions, attach};

/// Runs `hutch attach`; returns the session's exit code if it ends while
/// attached, 0 after a detach.
pub async fn run(args: AttachArgs) -> Result<u8, Error> {
    let target = args.target.vm.target()?;
    let mut client = target.connect().await?;
    let mode = if args.read_only { AttachMode::AttachViewer } else { AttachMode::AttachWriter };
    let options = AttachOptions { session: args.target.tag, mode, force: args.force, follow: true };
    let result = attach(&mut client, &options).await.map_err(Error::from);
    crate::exec::report::report(result, false, Error::exit_code)
}
