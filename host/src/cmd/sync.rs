//! `hutch sync [--name NAME]`: bring a `--ro` VM's snapshot of its workspace
//! up to date with the host (what `hutch exec` also does before each
//! command); for a synced VM (`--sync`), have its sync process flush both
//! ways now. `hutch sync --watch` keeps an agent's copy in step both ways in
//! the foreground (a synced workspace without a VM record: `--addr`).

use std::time::Duration;

use crate::cli::SyncArgs;
use crate::error::Error;
use crate::state::StateDir;
use crate::sync;
use crate::sync::live::{self, Engine, events, run as live_run};

/// How long a flush may take before `hutch sync` gives up on it.
const FLUSH_WAIT: Duration = Duration::from_secs(120);

/// Runs `hutch sync`; returns the exit code.
pub async fn run(args: SyncArgs) -> Result<u8, Error> {
    let (target, mut source) = args.snapshot.resolve()?;
    let state = StateDir::from_env()?;
    let live_dir = match target.record() {
        Some(record) if record.sync => Some(live::daemon::sync_dir(&state.vm_dir(&record.name))),
        Some(_) => None,
        None => Some(live_run::addr_state_dir(state.root(), &target.addr_text(), &source.root)),
    };
    if args.watch {
        let Some(dir) = live_dir else {
            return Err(Error::Usage("--watch keeps a synced workspace: this VM holds a --ro snapshot".into()));
        };
        if target.record().is_none() {
            source.rules.exclude_dirs = crate::config::DEFAULT_HEAVY_DIRS.iter().map(|d| (*d).to_owned()).collect();
        }
        let mut engine = Engine::start(&source.root, &source.rules, &dir, hutch_proto::watch::Method::native())?;
        let mut control = live_run::serve_control(&dir.join(live_run::CONTROL_SOCKET))?;
        let mut client = target.connect().await?;
        let mut stop = Box::pin(async {
            let _ = super::termination::termination().await;
        });
        let quiet = args.quiet;
        let mut ready = || {
            if !quiet {
                println!("ready");
            }
        };
        live_run::session(&mut client, &mut engine, &mut control, &mut stop, !args.quiet, &mut ready).await?;
        return Ok(0);
    }
    if let Some(dir) = live_dir.filter(|d| target.record().is_some() || d.join(live_run::CONTROL_SOCKET).exists()) {
        let flushed = live_run::flush(&dir, FLUSH_WAIT).await.ok_or_else(|| {
            Error::Usage(format!("the synced workspace of {} does not answer; `hutch up` starts it again", source.root.display()))
        })?;
        if args.json {
            println!("{}", serde_json::to_string(&flushed).unwrap_or_default());
        } else if !args.quiet {
            eprintln!(
                "hutch: {}: in step (pushed {}, received {}; the guest's part took {:.1} ms)",
                source.root.display(),
                flushed.pushed,
                flushed.received,
                flushed.guest_us as f64 / 1000.0
            );
            for event in events::read(&dir).iter().rev().take(10).rev() {
                eprintln!("hutch: sync: {}", event.line());
            }
        }
        return Ok(0);
    }
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
