//! `hutch diff [--name NAME] [--apply]`: what the guest changed in its
//! `--ro` snapshot since the last sync, as a patch for `git apply` on the
//! host, or applied directly (`--apply`).

use std::io::Write;

use crate::cli::DiffArgs;
use crate::error::Error;
use crate::sync::{self, SyncError};
use crate::untrusted::Beneath;

/// Runs `hutch diff`; prints the patch on stdout (or applies it), warnings
/// on stderr. Exits 1 when `--apply` left a change alone.
pub async fn run(args: DiffArgs) -> Result<u8, Error> {
    let (target, source) = args.snapshot.resolve()?;
    let mut client = target.connect().await?;
    let mut warn = |warning: String| eprintln!("hutch: warning: {warning}");
    if args.apply {
        let host = Beneath::open(&source.root).map_err(|e| Error::local("opening the workspace", std::io::Error::other(e)))?;
        let mut applied = sync::apply::Applied::default();
        let mut each = |change| {
            let mut warn = |warning: String| eprintln!("hutch: warning: {warning}");
            sync::apply::apply(&host, change, &mut applied, &mut warn)
                .map_err(|e| SyncError::Local { what: "applying the guest's changes".into(), source: std::io::Error::other(e) })
        };
        let tally = sync::diff::changes(&mut client, &source.root, &mut warn, &mut each).await?;
        let skipped = applied.skipped + tally.skipped;
        eprintln!("hutch: applied {} changes ({} written, {} removed); {skipped} left alone", applied.written + applied.removed, applied.written, applied.removed);
        return Ok(if skipped > 0 { 1 } else { 0 });
    }
    let mut stdout = std::io::stdout().lock();
    let mut each = |change| {
        let mut warn = |warning: String| eprintln!("hutch: warning: {warning}");
        sync::diff::render(&change, &mut stdout, &mut warn).map_err(|e| SyncError::Local { what: "writing the patch".into(), source: e })
    };
    sync::diff::changes(&mut client, &source.root, &mut warn, &mut each).await?;
    stdout.flush().map_err(|e| Error::local("writing the patch", e))?;
    Ok(0)
}
