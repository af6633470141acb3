//! `limactl list --json`: one JSON object per line, one line per instance,
//! e.g. `{"name":"web","status":"Running","dir":"/Users/me/.lima/web","cpus":4,...}`.

use serde::Deserialize;

use crate::backend::VmState;

#[derive(Debug, Deserialize)]
struct Instance {
    name: String,
    #[serde(default)]
    status: String,
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
}
