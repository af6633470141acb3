//! `hutch diff [--name NAME] [--apply]`: what the guest changed in its
//! `--ro` snapshot since the last sync, as a patch for `git apply` on the
//! host, or applied directly (`--apply`). For a synced workspace (`--sync`),
//! whose changes reach the host by themselves: the conflicts (each guest
//! version kept beside the host's, as a patch that would take the guest's)
//! and the refusals, from its event log.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use crate::cli::DiffArgs;
use crate::error::Error;
use crate::state::StateDir;
use crate::sync::live::{self, run as live_run};
use crate::sync::{self, SyncError};
use crate::untrusted::{Beneath, limits};

/// Runs `hutch diff`; prints the patch on stdout (or applies it), warnings
/// on stderr. Exits 1 when `--apply` left a change alone.
pub async fn run(args: DiffArgs) -> Result<u8, Error> {
    let (target, source) = args.snapshot.resolve()?;
    let state = StateDir::from_env()?;
    let live_dir = match target.record() {
        Some(record) if record.sync => Some(live::daemon::sync_dir(&state.vm_dir(&record.name))),
        Some(_) => None,
        None => Some(live_run::addr_state_dir(state.root(), &target.addr_text(), &source.root))
            .filter(|d| d.join(live::events::FILE).exists() || d.join(live_run::CONTROL_SOCKET).exists()),
    };
    if let Some(dir) = live_dir {
        if args.apply {
            return Err(Error::Usage(
                "a synced workspace's changes reach the host by themselves: `hutch diff` shows its conflicts, there is nothing to --apply"
                    .into(),
            ));
        }
        let report = live::conflicts::report(&source.root, &dir);
        for line in &report.notes {
            eprintln!("hutch: {line}");
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(report.patch.as_bytes()).and_then(|()| stdout.flush()).map_err(|e| Error::local("writing the patch", e))?;
        return Ok(0);
    }
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
        eprintln!(
            "hutch: applied {} changes ({} written, {} removed); {skipped} left alone",
            applied.written + applied.removed,
            applied.written,
            applied.removed
        );
        return Ok(if skipped > 0 { 1 } else { 0 });
    }
    // The patch waits in an unlinked file until the agent has sent all of
    // it: a diff broken off halfway prints nothing for `git apply` to take.
    let mut spool = Spool::new().map_err(|e| Error::local("making a temporary file for the patch", e))?;
    let mut each = |change| {
        let mut warn = |warning: String| eprintln!("hutch: warning: {warning}");
        sync::diff::render(&change, &mut spool, &mut warn).map_err(|e| SyncError::Local { what: "writing the patch".into(), source: e })
    };
    sync::diff::changes(&mut client, &source.root, &mut warn, &mut each).await?;
    let mut file = spool.file;
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::local("reading the patch back", e))?;
    let mut stdout = std::io::stdout().lock();
    std::io::copy(&mut file, &mut stdout).and_then(|_| stdout.flush()).map_err(|e| Error::local("writing the patch", e))?;
    Ok(0)
}

/// A temporary file that is never seen by name (removed once opened),
/// holding at most [`limits::PATCH_BYTES`].
struct Spool {
    file: File,
    written: u64,
}

impl Spool {
    fn new() -> std::io::Result<Spool> {
        use std::os::unix::fs::OpenOptionsExt;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(".hutch-diff-{}-{nanos}", std::process::id()));
        let file = File::options().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Spool { file, written: 0 })
    }
}

impl Write for Spool {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        limits::PATCH_BYTES.check(self.written + data.len() as u64).map_err(std::io::Error::other)?;
        let n = self.file.write(data)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
