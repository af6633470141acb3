//! VM names: what users type after `--name`, and the folder name in the state dir.

use std::fmt;
use std::path::Path;

use super::StateError;

/// A validated VM name: 1–48 of `[a-z0-9_-]`, starting with a letter or digit,
/// so it is safe as a file name, in a socket path and as a Tart/Lima VM name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VmName(String);

impl VmName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<VmName, StateError> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if first_ok && name.len() <= 48 && name.chars().all(ok_char) {
            Ok(VmName(name.to_owned()))
        } else {
            Err(StateError::BadName(name.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for VmName {
    type Error = StateError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        VmName::new(&name)
    }
}

impl From<VmName> for String {
    fn from(name: VmName) -> String {
        name.0
    }
}

impl AsRef<str> for VmName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for VmName {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VmName::new(s)
    }
}

/// The default VM name for a workspace: its folder name, cleaned up, plus a
/// short hash of its absolute path, so two checkouts named `app` get two VMs.
pub fn default_name(workspace: &Path) -> VmName {
    let base: String = workspace
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "root" } else { base };
    let base: String = base.chars().take(32).collect();
    let hash = fnv1a(workspace.as_os_str().as_encoded_bytes());
    VmName(format!("{}-{:06x}", base.trim_end_matches('-'), hash & 0xff_ffff))
}

/// FNV-1a: tiny, stable across releases and platforms (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        for good in ["a", "web-1", "x_y", "0day"] {
            assert!(VmName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "A", "a b", "a/b", "..", &"x".repeat(49)] {
            assert!(VmName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_names_are_stable_valid_and_distinct() {
        let a = default_name(Path::new("/home/me/My Project"));
        assert_eq!(a, default_name(Path::new("/home/me/My Project")));
        assert!(a.as_str().starts_with("my-project-"), "{a}");
        assert!(VmName::new(a.as_str()).is_ok());
        assert_ne!(a, default_name(Path::new("/tmp/My Project")));
        assert!(default_name(Path::new("/")).as_str().starts_with("root-"));
    }
}
