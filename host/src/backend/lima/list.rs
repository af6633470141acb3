//! `limactl list --json`: one JSON object per line, one line per instance,
//! e.g. `{"name":"web","status":"Running","dir":"/Users/me/.lima/web","cpus":4,...}`.

use serde::Deserialize;

use crate::backend::{SshEndpoint, VmState};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instance {
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    ssh_address: Option<String>,
    #[serde(default)]
    ssh_local_port: Option<u16>,
    #[serde(default)]
    config: Option<Config>,
    /// The disk's size in bytes, as configured.
    #[serde(default)]
    disk: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    user: Option<User>,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    name: Option<String>,
}

/// The state of instance `name` according to `output`, or why it is unreadable.
pub fn state_of(output: &str, name: &str) -> Result<VmState, String> {
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let instance: Instance = serde_json::from_str(line).map_err(|e| format!("unexpected output of `limactl list --json`: {e}"))?;
        if instance.name == name {
            return Ok(if instance.status == "Running" { VmState::Running } else { VmState::Stopped });
        }
    }
    Ok(VmState::Missing)
}

/// The disk size (bytes) of instance `name` according to `output`; None
/// when there is no such instance or Lima does not say.
pub fn disk_of(output: &str, name: &str) -> Result<Option<u64>, String> {
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let instance: Instance = serde_json::from_str(line).map_err(|e| format!("unexpected output of `limactl list --json`: {e}"))?;
        if instance.name == name {
            return Ok(instance.disk.filter(|d| *d > 0));
        }
    }
    Ok(None)
}

/// Where running instance `name`'s sshd answers (Lima forwards a local port
/// to it) and as which user, according to `output`; None when it is not
/// running or Lima does not say.
pub fn ssh_of(output: &str, name: &str) -> Result<Option<SshEndpoint>, String> {
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let instance: Instance = serde_json::from_str(line).map_err(|e| format!("unexpected output of `limactl list --json`: {e}"))?;
        if instance.name != name || instance.status != "Running" {
            continue;
        }
        let Some(port) = instance.ssh_local_port.filter(|p| *p != 0) else { return Ok(None) };
        let host = instance.ssh_address.filter(|a| !a.is_empty()).unwrap_or_else(|| "127.0.0.1".into());
        let user = instance.config.and_then(|c| c.user).and_then(|u| u.name);
        return Ok(Some(SshEndpoint { host, port, user }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_object_per_line() {
        let out = "{\"name\":\"a\",\"status\":\"Running\",\"cpus\":2}\n{\"name\":\"b\",\"status\":\"Stopped\"}\n{\"name\":\"c\",\"status\":\"Broken\"}\n";
        assert_eq!(state_of(out, "a"), Ok(VmState::Running));
        assert_eq!(state_of(out, "b"), Ok(VmState::Stopped));
        assert_eq!(state_of(out, "c"), Ok(VmState::Stopped));
        assert_eq!(state_of(out, "d"), Ok(VmState::Missing));
        assert_eq!(state_of("", "a"), Ok(VmState::Missing));
        assert!(state_of("NAME STATUS", "a").is_err());
    }

    #[test]
    fn disk_of_an_instance() {
        let out = "{\"name\":\"a\",\"status\":\"Stopped\",\"disk\":107374182400}\n{\"name\":\"b\",\"status\":\"Stopped\"}\n";
        assert_eq!(disk_of(out, "a"), Ok(Some(100 << 30)));
        assert_eq!(disk_of(out, "b"), Ok(None));
        assert_eq!(disk_of(out, "c"), Ok(None));
    }

    #[test]
    fn ssh_endpoint_of_a_running_instance() {
        let out = concat!(
            "{\"name\":\"a\",\"status\":\"Running\",\"sshAddress\":\"127.0.0.1\",\"sshLocalPort\":60022,\"config\":{\"user\":{\"name\":\"me\"}}}\n",
            "{\"name\":\"b\",\"status\":\"Stopped\",\"sshLocalPort\":0}\n",
            "{\"name\":\"c\",\"status\":\"Running\",\"sshLocalPort\":50022}\n",
        );
        let a = SshEndpoint { host: "127.0.0.1".into(), port: 60022, user: Some("me".into()) };
        assert_eq!(ssh_of(out, "a"), Ok(Some(a)));
        assert_eq!(ssh_of(out, "b"), Ok(None));
        assert_eq!(ssh_of(out, "c"), Ok(Some(SshEndpoint { host: "127.0.0.1".into(), port: 50022, user: None })));
        assert_eq!(ssh_of(out, "d"), Ok(None));
    }
}
