//! What is already mounted where, from `/proc/self/mountinfo`.

use std::path::Path;

use hutch_proto::mountinfo::mount_points;

/// Whether something is mounted exactly at `path`.
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    mount_points(&table).iter().any(|m| m == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_real_mount_points() {
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(!is_mountpoint(Path::new("/surely/not/mounted")));
    }
}
