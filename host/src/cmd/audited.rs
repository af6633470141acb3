//! One audited exec: the single path by which `hutch exec`, `run` and
//! `shell` run a command in a VM for the user, so that each step happens
//! for all three, in the same order:
//!
//! 1. a secret's real value never rides into the guest on the command's
//!    environment ([`crate::net::exec::scrub_env`]);
//! 2. the VM's network process is revived if it died, and in `mode =
//!    "ask"` an interactive terminal prompts ([`crate::net::exec`]);
//! 3. a `--ro` snapshot is re-synced first, when the caller asks (`exec`,
//!    `shell`: the host tree may have changed since `up`);
//! 4. a synced workspace is flushed before and after, so the host's edits
//!    are in the guest when the command starts and the guest's on the host
//!    when it returns;
//! 5. the command's line goes into the VM's audit log, with real secret
//!    values redacted;
//! 6. the guest's git work is taken back through the host's checks
//!    ([`crate::git::take::after_exec`]).

use std::time::{Duration, Instant};

use hutch_proto::v1::exited;

use crate::audit::{self, Log, What};
use crate::error::Error;
use crate::exec::{self, Finished, Options, Outcome, SessionSpec};
use crate::net::secrets::redact_values;
use crate::target::Target;
use crate::transport::Client;

/// Where and how an audited exec runs, besides the command itself.
pub struct Audited<'a> {
    /// The agent's target: a VM (audited), or an agent by address (no VM,
    /// so no audit log, network or workspace steps).
    pub target: &'a Target,
    /// The secrets' real values in force (`crate::net::exec::real_values`):
    /// scrubbed from the environment, redacted from the audit line.
    pub secrets: &'a [(String, String)],
    /// Re-sync a `--ro` snapshot before the command; `Some(progress)` says
    /// whether to show the re-sync's progress (not with `--json`).
    pub refresh_snapshot: Option<bool>,
}

/// Runs `options` on `client` (connected to `audited.target`) through every
/// step of the module documentation; returns how the command ended.
pub async fn run(
    client: &mut Client,
    audited: &Audited<'_>,
    mut options: Options,
    session: Option<&SessionSpec>,
) -> Result<Finished, Error> {
    let target = audited.target;
    crate::net::exec::scrub_env(&mut options.env, audited.secrets);
    crate::net::exec::keep_network(target);
    options.ask = crate::net::exec::ask_for(target);
    if let (Some(progress), Some(record)) = (audited.refresh_snapshot, target.record()) {
        crate::sync::refresh_snapshot(client, record, progress).await?;
    }
    let synced = synced_dir(target);
    if let Some(dir) = &synced {
        crate::sync::live::run::flush_or_warn(dir).await;
    }
    let began = Instant::now();
    let result = exec::run_as(client, &options, session).await.map_err(Error::from);
    if let Some(dir) = &synced {
        crate::sync::live::run::flush_or_warn(dir).await;
    }
    record(target, &options, &result, began.elapsed(), audited.secrets);
    crate::git::take::after_exec(target, result.as_ref().ok()).await;
    result
}

/// Connects to `audited.target` and [`run`]s there; a target that cannot
/// be reached gets its audit line too.
pub async fn connect_and_run(audited: &Audited<'_>, options: Options, session: Option<&SessionSpec>) -> Result<Finished, Error> {
    match audited.target.connect().await {
        Ok(mut client) => run(&mut client, audited, options, session).await,
        Err(e) => {
            let result = Err(Error::from(e));
            record(audited.target, &options, &result, Duration::ZERO, audited.secrets);
            result
        }
    }
}

/// The sync state folder of a VM whose workspace is synced.
fn synced_dir(target: &Target) -> Option<std::path::PathBuf> {
    let Target::Vm { state, record } = target else { return None };
    record.sync.then(|| crate::sync::live::daemon::sync_dir(&state.vm_dir(&record.name)))
}

/// Appends the line of one exec on `target` to its VM's audit log (nothing
/// for an `--addr` target, which has no VM), with real secret values
/// replaced by their names.
fn record(target: &Target, options: &Options, result: &Result<Finished, Error>, took: Duration, values: &[(String, String)]) {
    let Target::Vm { state, record } = target else { return };
    let redact = |text: &str| redact_values(text, values.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut exec = audit::Exec {
        argv: options.argv.iter().map(|a| redact(a)).collect(),
        cwd: redact(&options.cwd),
        tag: format!("hutch-{}", std::process::id()),
        duration_ms: audit::millis(took),
        ..audit::Exec::default()
    };
    match result {
        Ok(Finished { outcome: Outcome::Exited(exited), .. }) => {
            match exited.status {
                Some(exited::Status::Code(code)) => exec.exit_code = Some(code),
                Some(exited::Status::Signal(number)) => {
                    exec.signal =
                        Some(if exited.signal_name.is_empty() { number.to_string() } else { format!("SIG{}", exited.signal_name) });
                }
                None => {}
            }
            if exited.timed_out {
                exec.error = Some("timed out".into());
            }
            exec.duration_ms = exited.duration_ms;
        }
        Ok(finished) => exec.error = finished.outcome.message().or_else(|| Some(format!("exit {}", finished.outcome.exit_code()))),
        Err(error) => exec.error = Some(redact(&error.to_string())),
    }
    Log::for_vm(state, record).append(What::Exec(exec));
}
