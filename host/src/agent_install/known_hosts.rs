//! Trust on first use for SSH host keys, in hutch's own `known_hosts` (in the
//! state directory, OpenSSH's format: `host key` for port 22, `[host]:port
//! key` otherwise), so installing never depends on — or edits — the user's
//! `~/.ssh/known_hosts`.
//!
//! The first connection to a host records the key it presents; later
//! connections must present a recorded key, and a different one is a hard
//! error naming the file and line to delete. Verification is never skipped.
//!
//! A hutch VM's key is pinned under its VM name (`hutch-vm:NAME`) rather than
//! its address: QEMU forwards a different local port each boot and Tart
//! hands a deleted VM's IP to the next one. Deleting the VM (`hutch rm`)
//! forgets its key, so a VM recreated under the same name is learned again.

use std::io::Write;
use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PublicKey};

use super::error::InstallError;

/// What [`KnownHosts::check`] concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The key was already recorded for this host.
    Known,
    /// Nothing was recorded for this host: the key was added (first use).
    Learned,
}

/// hutch's known_hosts file.
#[derive(Clone, Debug)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file at `path` (it need not exist yet).
    pub fn at(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts `key` for `host:port` if it is recorded, records it if the host
    /// has no entry yet, and fails if the host's entries hold other keys.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Result<Verdict, InstallError> {
        self.check_name(&entry_name(host, port), key)
    }

    /// [`KnownHosts::check`] for an entry name (`host`, `[host]:port`, or
    /// [`vm_entry`]).
    pub fn check_name(&self, name: &str, key: &PublicKey) -> Result<Verdict, InstallError> {
        let name = name.to_owned();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(self.error(e.to_string())),
        };
        let mut first_other = None;
        for (index, line) in text.lines().enumerate() {
            let Some((names, recorded)) = parse_line(line) else { continue };
            if !names.split(',').any(|n| n == name) {
                continue;
            }
            if recorded.key_data() == key.key_data() {
                return Ok(Verdict::Known);
            }
            first_other.get_or_insert((index + 1, recorded));
        }
        if let Some((line, recorded)) = first_other {
            return Err(InstallError::HostKeyMismatch {
                host: name,
                file: self.path.clone(),
                line,
                known: describe(&recorded),
                presented: describe(key),
            });
        }
        self.append(&name, key)?;
        Ok(Verdict::Learned)
    }

    /// Removes every entry for exactly `name` (other lines are kept as they
    /// are); nothing to remove is not an error.
    pub fn forget(&self, name: &str) -> Result<(), InstallError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.error(e.to_string())),
        };
        let named = |line: &str| line.split_whitespace().next().is_some_and(|names| names.split(',').any(|n| n == name));
        if !text.lines().any(named) {
            return Ok(());
        }
        let kept: String = text.lines().filter(|l| !named(l)).map(|l| format!("{l}\n")).collect();
        let tmp = self.path.with_extension("hutch-tmp");
        std::fs::write(&tmp, kept).and_then(|()| std::fs::rename(&tmp, &self.path)).map_err(|e| self.error(e.to_string()))
    }

    fn append(&self, name: &str, key: &PublicKey) -> Result<(), InstallError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e.to_string()))?;
        }
        let openssh = key.to_openssh().map_err(|e| self.error(format!("cannot encode the host key: {e}")))?;
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path).map_err(|e| self.error(e.to_string()))?;
        // One write(2) per line, so concurrent installs never interleave within a line.
        let line = format!("{name} {}\n", openssh.trim());
        file.write_all(line.as_bytes()).map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, why: String) -> InstallError {
        InstallError::KnownHosts { path: self.path.clone(), why }
    }
}

/// The name OpenSSH uses for `host:port` in known_hosts.
pub fn entry_name(host: &str, port: u16) -> String {
    if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") }
}

/// The name a hutch VM's host key is pinned under.
pub fn vm_entry(vm: &str) -> String {
    format!("hutch-vm:{vm}")
}

/// Key type and SHA-256 fingerprint, as `ssh-keygen -l` shows them.
pub fn describe(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

/// `names keytype base64 [comment]`; comments, blank lines, markers
/// (`@revoked`…) and hashed names are not hutch's and are skipped.
fn parse_line(line: &str) -> Option<(&str, PublicKey)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('@') || line.starts_with('|') {
        return None;
    }
    let (names, key) = line.split_once(char::is_whitespace)?;
    let key = PublicKey::from_openssh(key.trim()).ok()?;
    Some((names, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcYhJH9iM5X+1pDd6fVg2+5Fv2iK9jGQJ0JcM+8l3lK";
    const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5z2vGzC8bq2fQ4dS0u1gq2n5b4oZr8PcQ8H3Yv6iWd";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key")
    }

    #[test]
    fn first_use_records_then_accepts_then_refuses_another_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let known = KnownHosts::at(dir.path().join("known_hosts"));
        assert_eq!(known.check("10.0.0.1", 2222, &key(KEY_A)).expect("learn"), Verdict::Learned);
        assert_eq!(known.check("10.0.0.1", 2222, &key(KEY_A)).expect("known"), Verdict::Known);
        let text = std::fs::read_to_string(known.path()).expect("read");
        assert!(text.starts_with("[10.0.0.1]:2222 ssh-ed25519 "), "{text}");
        match known.check("10.0.0.1", 2222, &key(KEY_B)) {
            Err(InstallError::HostKeyMismatch { line: 1, host, .. }) => assert_eq!(host, "[10.0.0.1]:2222"),
            other => panic!("expected a mismatch, got {other:?}"),
        }
        // Another port is another host.
        assert_eq!(known.check("10.0.0.1", 22, &key(KEY_B)).expect("learn"), Verdict::Learned);
    }

    #[test]
    fn vm_entries_are_pinned_by_name_and_forgotten_with_the_vm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let known = KnownHosts::at(dir.path().join("known_hosts"));
        assert_eq!(known.check("10.0.0.1", 22, &key(KEY_A)).expect("learn"), Verdict::Learned);
        let vm = vm_entry("web");
        assert_eq!(known.check_name(&vm, &key(KEY_B)).expect("learn"), Verdict::Learned);
        assert!(matches!(known.check_name(&vm, &key(KEY_A)), Err(InstallError::HostKeyMismatch { .. })));
        known.forget(&vm).expect("forget");
        assert_eq!(known.check_name(&vm, &key(KEY_A)).expect("learn again"), Verdict::Learned);
        // Other hosts' entries are kept.
        assert_eq!(known.check("10.0.0.1", 22, &key(KEY_A)).expect("known"), Verdict::Known);
        known.forget("nothing-here").expect("no-op");
    }

    #[test]
    fn foreign_lines_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("# comment\n\n|1|abc= {KEY_B}\n@revoked * {KEY_B}\ngarbage\nhost {KEY_A} a comment\n"))
            .expect("write");
        let known = KnownHosts::at(&path);
        assert_eq!(known.check("host", 22, &key(KEY_A)).expect("known"), Verdict::Known);
    }
}
