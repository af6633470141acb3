//! A fingerprint of a gitdir's refs: what `Exited.git_stamp` carries after
//! every command, so the host takes the guest's commits only when a branch,
//! a tag or HEAD moved, and pays nothing otherwise.
//!
//! It covers HEAD's contents, `packed-refs` (size, mtime, inode: git rewrites
//! it through a rename) and every loose ref below `refs/` (name, size,
//! mtime, inode). Any ref update git makes changes one of them. It is a hash
//! (FNV-1a, 64 bits): no secret, only a change detector.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Loose refs looked at per gitdir; past it the stamp covers their count
/// only (the host then still fetches whenever HEAD or packed-refs moves).
const MAX_LOOSE_REFS: usize = 100_000;

/// FNV-1a over everything fed to it.
struct Fnv(u64);

impl Fnv {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn meta(&mut self, meta: &std::fs::Metadata) {
        self.feed(&meta.len().to_le_bytes());
        self.feed(&meta.mtime().to_le_bytes());
        self.feed(&meta.mtime_nsec().to_le_bytes());
        self.feed(&meta.ino().to_le_bytes());
    }
}

/// The stamp of `gitdirs` together (16 hex digits); empty when there are none.
pub fn of(gitdirs: &[&Path]) -> String {
    if gitdirs.is_empty() {
        return String::new();
    }
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    for dir in gitdirs {
        hash.feed(dir.as_os_str().as_bytes());
        hash.feed(&std::fs::read(dir.join("HEAD")).unwrap_or_default());
        if let Ok(meta) = std::fs::symlink_metadata(dir.join("packed-refs")) {
            hash.meta(&meta);
        }
        let mut seen = 0;
        walk(&dir.join("refs"), &mut hash, &mut seen);
        hash.feed(&seen.to_le_bytes());
    }
    format!("{:016x}", hash.0)
}

/// Feeds every loose ref below `dir` (not following symlinks), in name order.
fn walk(dir: &Path, hash: &mut Fnv, seen: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(&entry.path(), hash, seen);
        } else if *seen < MAX_LOOSE_REFS {
            *seen += 1;
            hash.feed(entry.file_name().as_bytes());
            hash.meta(&meta);
        } else {
            *seen += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_moves_with_any_ref_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path();
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(git.join("packed-refs"), "x refs/heads/main\n").unwrap();
        let first = of(&[git]);
        assert_eq!(first.len(), 16);
        assert_eq!(of(&[git]), first, "nothing changed");
        std::fs::write(git.join("refs/heads/feature"), "abc\n").unwrap();
        let second = of(&[git]);
        assert_ne!(second, first, "a new branch");
        std::fs::write(git.join("HEAD"), "ref: refs/heads/feature\n").unwrap();
        assert_ne!(of(&[git]), second, "a checkout");
        assert_eq!(of(&[]), "");
    }
}
