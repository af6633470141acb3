//! `hutch kill TAG [-s SIG]`: signal a session's process group.

use crate::cli::KillArgs;
use crate::error::Error;
use crate::sessions;

/// Runs `hutch kill`.
pub async fn run(args: KillArgs) -> Result<u8, Error> {
    let target = args.target.vm.target()?;
    let mut client = target.connect().await?;
    sessions::signal(&mut client, &args.target.tag, &args.signal).await?;
    Ok(0)
}
