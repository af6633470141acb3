//! What the network's rules mean for a command run in a VM (`hutch exec`,
//! `run`, `shell` through `crate::cmd::audited`, and `hutch mcp`): a
//! secret's real value never rides into the guest on an exec's environment
//! (`env = ["ANTHROPIC_API_KEY"]` in the configuration, `-e NAME`), the
//! VM's network process is revived if it died, and in `mode = "ask"` an
//! interactive terminal prompts (see `crate::exec::ask`).

use std::collections::HashMap;

use crate::config::network::NetworkConfig;
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
