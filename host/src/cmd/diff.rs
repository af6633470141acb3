//! `hutch diff [--name NAME]`: what the guest changed in its `--ro` snapshot
//! since the last sync, as a patch for `git apply` on the host. For a
//! synced workspace (`--sync`), whose changes reach the host by themselves:
//! the conflicts (each guest version kept beside the host's, as a patch
//! that would take the guest's) and the refusals, from its event log.

use std::io::Write;

use crate::cli::DiffArgs;
use crate::error::Error;
use crate::state::StateDir;
use crate::sync;
use crate::sync::live::{self, run as live_run};

/// Runs `hutch diff`; prints the patch on stdout, warnings on stderr.
pub async fn run(args: DiffArgs) -> Result<u8, Error> {
    let (target, source) = args.snapshot.resolve()?;
    let state = StateDir::from_env()?;
    let live_dir = match target.record() {
        Some(record) if record.sync => Some(live::daemon::sync_dir(&state.vm_dir(&record.name))),
        Some(_) => None,
        None => Some(live_run::addr_state_dir(state.root(), &target.addr_text(), &source.root))
            .filter(|d| d.join(live::events::FILE).exists() || d.join(live_run::CONTROL_SOCKET).exists()),
    };
    let text = match live_dir {
        Some(dir) => {
            let report = live::conflicts::report(&source.root, &dir);
            for line in &report.notes {
                eprintln!("hutch: {line}");
            }
            report.patch
        }
        None => {
            let mut client = target.connect().await?;
            let patch = sync::diff::diff(&mut client, &source.root).await?;
            for warning in &patch.warnings {
                eprintln!("hutch: warning: {warning}");
            }
            patch.text
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).map_err(|e| Error::local("writing the patch", e))?;
    stdout.flush().map_err(|e| Error::local("writing the patch", e))?;
    Ok(0)
}
