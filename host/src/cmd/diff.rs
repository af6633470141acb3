//! `hutch diff [--name NAME]`: what the guest changed in its `--ro` snapshot
//! since the last sync, as a patch for `git apply` on the host.

use std::io::Write;

use crate::cli::DiffArgs;
use crate::error::Error;
use crate::sync;

/// Runs `hutch diff`; prints the patch on stdout, warnings on stderr.
pub async fn run(args: DiffArgs) -> Result<u8, Error> {
    let (target, source) = args.snapshot.resolve()?;
    let mut client = target.connect().await?;
    let patch = sync::diff::diff(&mut client, &source.root).await?;
    for warning in &patch.warnings {
        eprintln!("hutch: warning: {warning}");
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(patch.text.as_bytes()).map_err(|e| Error::local("writing the patch", e))?;
    stdout.flush().map_err(|e| Error::local("writing the patch", e))?;
    Ok(0)
}
