//! `hutch sync [--name NAME]`: bring a `--ro` VM's snapshot of its workspace
//! up to date with the host (what `hutch exec` also does before each command).

use crate::cli::SyncArgs;
use crate::error::Error;
use crate::sync;

/// Runs `hutch sync`; returns the exit code.
pub async fn run(args: SyncArgs) -> Result<u8, Error> {
    let (target, source) = args.snapshot.resolve()?;
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
