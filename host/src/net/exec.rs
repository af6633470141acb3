//! What the network's rules mean for `hutch exec`, `run` and `shell`: a
//! secret's real value never rides into the guest on an exec's environment
//! (`env = ["ANTHROPIC_API_KEY"]` in the configuration, `-e NAME`), every
//! command run in a VM gets its line in the VM's audit log, and in `mode =
//! "ask"` an interactive terminal prompts (see `crate::exec::ask`).

use std::collections::HashMap;
use std::time::Duration;

use hutch_proto::v1::exited;

use super::secrets::redact_values;
use crate::audit::{self, Log, What};
use crate::config::network::NetworkConfig;
use crate::error::Error;
use crate::exec::{Finished, Options, Outcome, SessionSpec};
use crate::target::Target;

/// The secrets' real values as this process sees them (its environment,
/// the secrets' files), by secret name.
pub fn real_values(config: &NetworkConfig) -> Vec<(String, String)> {
    let value = |secret: &crate::config::network::SecretConfig| match (&secret.from_env, &secret.from_file) {
        (Some(var), _) => std::env::var(var).ok(),
        (None, Some(file)) => std::fs::read_to_string(file).ok().map(|text| text.trim().to_owned()),
        (None, None) => None,
    };
    config.secrets.iter().filter_map(|(name, secret)| value(secret).filter(|v| !v.is_empty()).map(|v| (name.clone(), v))).collect()
}

/// For a VM whose network asks (`mode = "ask"`): its `net/` folder and name,
/// for the prompt of an interactive terminal.
pub fn ask_for(target: &Target) -> Option<(std::path::PathBuf, String)> {
    let Target::Vm { state, record } = target else { return None };
    let net = super::net_dir(&state.vm_dir(&record.name));
    let policy = super::policy::PolicyFile::load(&net).ok()?;
    (policy.mode == crate::config::network::Mode::Ask).then(|| (net, record.name.to_string()))
}

/// Removes from `env` every variable whose value holds a secret's real
/// value, saying so on stderr: the guest gets the secret's placeholder from
/// its agent instead (when the VM's network is on).
pub fn scrub_env(env: &mut HashMap<String, String>, values: &[(String, String)]) {
    env.retain(|key, value| {
        let Some((secret, _)) = values.iter().find(|(_, real)| value.contains(real.as_str())) else { return true };
        eprintln!(
            "hutch: not passing {key} into the VM: its value is secret {secret}'s, which stays on the host (the guest sees a placeholder)"
        );
        false
    });
}

/// Before a command runs in a VM: its network process, if it had one and
/// it died, is started again (see `daemon::revive`); failing that, a
/// warning, and the command runs (without a network, as the guest would
/// see it anyway).
pub fn keep_network(target: &Target) {
    if let Target::Vm { state, record } = target
        && let Err(e) = super::daemon::revive(state, record)
    {
        eprintln!("hutch: warning: {e}");
    }
}

/// The secrets' real values of the configuration in force in the current
/// directory, for commands that load no configuration of their own
/// (`shell`); none when it cannot be read (the command itself reports that
/// elsewhere, or needs no configuration).
pub fn real_values_here() -> Vec<(String, String)> {
    let cwd = std::env::current_dir().unwrap_or_default();
    crate::config::Config::load(&cwd).map(|c| real_values(&c.network)).unwrap_or_default()
}

/// Runs `options` on `target` and writes it into the VM's audit log, with
/// `values` (the caller's [`real_values`]) redacted from it.
pub async fn run_audited(
    target: &Target,
    options: &Options,
    session: Option<&SessionSpec>,
    values: &[(String, String)],
) -> Result<Finished, Error> {
    keep_network(target);
    let mut options = options.clone();
    options.ask = ask_for(target);
    let options = &options;
    let began = std::time::Instant::now();
    let result = async { Ok(crate::exec::run_as(&mut target.connect().await?, options, session).await?) }.await;
    record(target, options, &result, began.elapsed(), values);
    crate::git::take::after_exec(target, result.as_ref().ok()).await;
    result
}

/// Appends the line of one exec on `target` to its VM's audit log (nothing
/// for an `--addr` target, which has no VM), with real secret values
/// replaced by their names.
pub fn record(target: &Target, options: &Options, result: &Result<Finished, Error>, took: Duration, values: &[(String, String)]) {
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
