//! `tart list --format json`: the VMs Tart knows and whether they run.
//!
//! Tart prints an array of objects such as
//! `{"Name":"web","Source":"local","State":"running","Running":true,"Disk":50,"Size":21,"OS":"linux"}`
//! (older versions lack `State`; newer ones may add fields, which are ignored).

use serde::Deserialize;

use crate::backend::VmState;

/// One entry of `tart list --format json`.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Source", default)]
    source: String,
    #[serde(rename = "Running", default)]
    running: bool,
    #[serde(rename = "State", default)]
    state: String,
}

/// The state of local VM `name` according to `json`, or why it is unreadable.
pub fn state_of(json: &str, name: &str) -> Result<VmState, String> {
    let entries: Vec<Entry> = serde_json::from_str(json).map_err(|e| format!("unexpected output of `tart list --format json`: {e}"))?;
    let local = |e: &&Entry| e.name == name && (e.source.is_empty() || e.source.eq_ignore_ascii_case("local"));
    Ok(match entries.iter().find(local) {
        Some(entry) if entry.running || entry.state.eq_ignore_ascii_case("running") => VmState::Running,
        Some(_) => VmState::Stopped,
        None => VmState::Missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_local_vms_and_ignores_oci_images() {
        let json = r#"[
            {"Name":"web","Source":"local","State":"running","Running":true,"Disk":50,"Size":21},
            {"Name":"db","Source":"local","State":"stopped","Running":false},
            {"Name":"old","Source":"local","Running":false},
            {"Name":"ghcr.io/cirruslabs/macos-sequoia-base:latest","Source":"OCI","Running":false}
        ]"#;
        assert_eq!(state_of(json, "web"), Ok(VmState::Running));
        assert_eq!(state_of(json, "db"), Ok(VmState::Stopped));
        assert_eq!(state_of(json, "old"), Ok(VmState::Stopped));
        assert_eq!(state_of(json, "ghcr.io/cirruslabs/macos-sequoia-base:latest"), Ok(VmState::Missing));
        assert_eq!(state_of(json, "nope"), Ok(VmState::Missing));
        assert!(state_of("Name Source", "web").is_err());
    }
}
