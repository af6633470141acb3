//! Making or removing an entry hutch owns (a heavy dir's mount point, the
//! git guard's placeholder `.git`) without changing its folder's times: the
//! project should look as the user left it, and build tools that compare a
//! folder's mtime must not see hutch's own bookkeeping as a change.

use std::fs::{File, FileTimes};
use std::path::Path;

/// Runs `change` on `path` (a mkdir, an rmdir), then gives `path`'s folder
/// back the access and modification times it had before. The times are
/// restored best-effort: a folder that cannot be opened keeps its new ones.
pub fn keeping_parent_times<T>(path: &Path, change: impl FnOnce(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let before = parent.and_then(|p| std::fs::metadata(p).ok()).and_then(|m| Some((m.accessed().ok()?, m.modified().ok()?)));
    let result = change(path);
    if let (Some(parent), Some((accessed, modified))) = (parent, before)
        && let Ok(folder) = File::open(parent)
    {
        let _ = folder.set_times(FileTimes::new().set_accessed(accessed).set_modified(modified));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_and_removed_folder_leaves_its_parents_mtime_alone() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        File::open(dir.path()).unwrap().set_times(FileTimes::new().set_modified(old).set_accessed(old)).unwrap();
        let made = dir.path().join(".git");
        keeping_parent_times(&made, |p| std::fs::create_dir(p)).unwrap();
        assert!(made.is_dir());
        assert_eq!(std::fs::metadata(dir.path()).unwrap().modified().unwrap(), old);
        keeping_parent_times(&made, |p| std::fs::remove_dir(p)).unwrap();
        assert!(!made.exists());
        assert_eq!(std::fs::metadata(dir.path()).unwrap().modified().unwrap(), old);
        assert!(keeping_parent_times(&made, |p| std::fs::remove_dir(p)).is_err(), "the change's own error is returned");
    }
}
