//! The VM's own `/etc/machine-id`, as the host gives it (`hutch.machine_id=`
//! on the kernel command line): each VM is its own machine, also when its
//! disk is a copy of another's (a fork) or it was booted ahead of time (a
//! warm pool). Written before anything else starts, so no program ever reads
//! another VM's id (the default image ships none at all).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Where programs read it.
const FILE: &str = "/etc/machine-id";

/// Whether `text` is a machine id: 32 lowercase hex digits, not all zeros.
pub fn valid(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) && text.bytes().any(|b| b != b'0')
}

/// Makes `/etc/machine-id` say `id` (unless it already does), replacing it
/// in one rename so a reader never sees half of one.
pub fn install(id: &str) -> std::io::Result<()> {
    install_at(Path::new(FILE), id)
}

fn install_at(path: &Path, id: &str) -> std::io::Result<()> {
    let line = format!("{id}\n");
    if std::fs::read(path).is_ok_and(|old| old == line.as_bytes()) {
        return Ok(());
    }
    let tmp = path.with_file_name(".machine-id.hutch.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o444).open(&tmp)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_written_whole() {
        assert!(valid("0123456789abcdef0123456789abcdef"));
        assert!(!valid(&"0".repeat(32)) && !valid("0123") && !valid(&"A".repeat(32)) && !valid("../../../../etc/shadow0123456789a"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine-id");
        install_at(&path, "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0123456789abcdef0123456789abcdef\n");
        install_at(&path, "fedcba9876543210fedcba9876543210").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "fedcba9876543210fedcba9876543210\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o444);
    }
}
