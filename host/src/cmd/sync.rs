//! `hutch sync [--name NAME]`: bring a `--ro` VM's snapshot of its workspace
//! up to date with the host (what `hutch exec` also does before each command).

use crate::cli::SyncArgs;
use crate::error::Error;
use crate::sync::{self, Source};
use crate::target::Target;

/// Runs `hutch sync`; returns the exit code.
pub async fn run(args: SyncArgs) -> Result<u8, Error> {
    let (target, source) = resolve(&args.snapshot)?;
    let mut client = target.connect().await?;
    let report = sync::sync(&mut client, &source, !args.quiet).await?;
    if args.json {
        let json = serde_json::json!({
            "root": source.root, "entries": report.entries, "sent": report.sent, "deleted": report.deleted,
            "bytes": report.bytes.0, "compressed_bytes": report.bytes.1, "fresh": report.fresh,
            "duration_ms": report.took.as_secs_f64() * 1000.0,
        });
        println!("{json}");
    } else if !args.quiet {
        eprintln!("hutch: {}: {}", source.root.display(), report.line());
    }
    Ok(0)
}

/// The agent and the snapshot source for `sync`/`diff`: a `--ro` VM's record,
/// or, with `--addr`, the given (or current) folder and walk flags.
pub fn resolve(args: &crate::cli::SnapshotArgs) -> Result<(Target, Source), Error> {
    let target = Target::resolve(args.name.as_ref(), &args.agent)?;
    let source = match &target.vm {
        Some((_, record)) => {
            let Some(ro) = record.ro else {
                return Err(Error::Usage(format!(
                    "VM {} shares its workspace with the host (no --ro snapshot): there is nothing to sync",
                    record.name
                )));
            };
            let root = record.workspace.clone().ok_or_else(|| Error::Usage(format!("VM {} has no workspace", record.name)))?;
            sync::source(&root, ro.git, ro.no_ignore)
        }
        None => {
            let root = crate::workspace::resolve(args.workspace.as_deref())?;
            sync::source(&root, args.ro_git, args.no_ignore)
        }
    };
    Ok((target, source))
}
