//! The snapshot tree walk that host and agent must agree on.
//!
//! `hutch --ro` compares the host's walk of a project with the agent's walk of
//! its snapshot: an entry present on one side only is sent or deleted, so both
//! walks must leave out exactly the same paths (ignored files, `.git`). Keeping
//! the one walk here, in the crate both sides link, makes that true by
//! construction. The walk runs on several threads (`ignore`'s parallel walker)
//! and never follows symlinks. Entries are stat'ed relative to a descriptor
//! of their folder (`fstatat`), not by full path: the kernel then resolves
//! one name instead of every component of the path, which was most of a
//! no-change sync's time.

use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use ignore::{WalkBuilder, WalkState};

use crate::v1::{EntryKind, ManifestEntry, WalkRules};

/// The mode bits a snapshot keeps: permissions and the sticky bit, never
/// setuid or setgid. The agent writes snapshots as its own user, not as the
/// host user who owns the files, so those bits would grant the wrong user's
/// rights; it drops them, and both walks leave them out, so a setuid file
/// on the host is not "changed" at every sync.
pub const SNAPSHOT_MODE_BITS: u32 = 0o1777;

/// Name of the per-folder ignore file hutch reads besides `.gitignore`.
pub const HUTCHIGNORE: &str = ".hutchignore";

/// Why a tree could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The root is missing or not a folder.
    #[error("{root}: {why}")]
    Root {
        /// The root folder.
        root: String,
        /// What is wrong with it.
        why: String,
    },
    /// An entry could not be read.
    #[error("walking {root}: {source}")]
    Entry {
        /// The root folder.
        root: String,
        /// The walker's error (it names the path).
        source: ignore::Error,
    },
}

/// A walked tree: the root folder's own entry (empty path) and every entry
/// below it, sorted by path bytes, so parents come before their children.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    /// The root folder itself.
    pub root: ManifestEntry,
    /// Everything below it.
    pub entries: Vec<ManifestEntry>,
}

/// Walks `root` with `rules`. Sockets, fifos and devices are skipped, as
/// `rsync -a` skips them without `-D`.
pub fn walk(root: &Path, rules: &WalkRules) -> Result<Tree, WalkError> {
    let root_error = |why: String| WalkError::Root { root: root.display().to_string(), why };
    let meta = std::fs::metadata(root).map_err(|e| root_error(e.to_string()))?;
    if !meta.is_dir() {
        return Err(root_error("not a folder".into()));
    }
    let root_entry = entry(Vec::new(), &meta, Vec::new()).ok_or_else(|| root_error("not a folder".into()))?;

    let mut builder = WalkBuilder::new(root);
    builder
        .standard_filters(!rules.no_ignore)
        .hidden(false)
        .ignore(false)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .parents(false)
        .follow_links(false)
        .threads(walk_threads());
    if !rules.no_ignore {
        builder.add_custom_ignore_filename(HUTCHIGNORE);
    }
    let (include_git, exclude) = (rules.include_git, rules.exclude_dirs.clone());
    if !include_git || !exclude.is_empty() {
        builder.filter_entry(move |e| {
            let name = e.file_name();
            let excluded = (!include_git && name == ".git")
                || (e.file_type().is_some_and(|t| t.is_dir()) && exclude.iter().any(|d| name == d.as_str()));
            e.depth() == 0 || !excluded
        });
    }

    let root_len = root.as_os_str().len();
    let (tx, rx) = mpsc::channel::<Result<Vec<ManifestEntry>, ignore::Error>>();
    builder.build_parallel().run(|| {
        let mut batch = Batch { entries: Vec::new(), tx: tx.clone() };
        let mut folders = FolderCache::default();
        Box::new(move |result| {
            let found = match result {
                Ok(dent) if dent.depth() == 0 => return WalkState::Continue,
                Ok(dent) => visit(root_len, &dent, &mut folders),
                Err(e) => Err(e),
            };
            match found {
                Ok(Some(e)) => {
                    batch.entries.push(e);
                    WalkState::Continue
                }
                Ok(None) => WalkState::Continue,
                Err(e) => {
                    let _ = batch.tx.send(Err(e));
                    WalkState::Quit
                }
            }
        })
    });
    drop(tx);
    let mut entries = Vec::new();
    for item in rx {
        match item {
            Ok(mut found) => entries.append(&mut found),
            Err(source) => return Err(WalkError::Entry { root: root.display().to_string(), source }),
        }
    }
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(Tree { root: root_entry, entries })
}

/// One walker thread's entries, handed over in one piece when the thread's
/// visitor is dropped (at the end of the walk) rather than one by one.
struct Batch {
    entries: Vec<ManifestEntry>,
    tx: mpsc::Sender<Result<Vec<ManifestEntry>, ignore::Error>>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        let _ = self.tx.send(Ok(std::mem::take(&mut self.entries)));
    }
}

/// Folder descriptors a walker thread opened lately. A thread visits the
/// children of one folder in a run (the walker queues them together), so a
/// handful of descriptors serve nearly every entry.
#[derive(Default)]
struct FolderCache {
    open: Vec<(Vec<u8>, OwnedFd)>,
}

/// Folders each walker thread keeps open.
const CACHED_FOLDERS: usize = 4;

/// How a folder is opened for `fstatat`: `O_PATH` where it exists (Linux:
/// no read permission needed, nothing read), a plain read-only open elsewhere
/// (macOS hosts, whose walk is this same code).
#[cfg(any(target_os = "linux", target_os = "android"))]
const FOLDER_FLAGS: OFlag = OFlag::O_PATH.union(OFlag::O_DIRECTORY).union(OFlag::O_CLOEXEC);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const FOLDER_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_CLOEXEC);

impl FolderCache {
    /// A descriptor ([`FOLDER_FLAGS`]) of the folder at `path`.
    fn get(&mut self, path: &Path) -> nix::Result<&OwnedFd> {
        let key = path.as_os_str().as_bytes();
        if let Some(i) = self.open.iter().rposition(|(p, _)| p == key) {
            let last = self.open.len() - 1;
            self.open.swap(i, last);
        } else {
            let fd = nix::fcntl::open(path, FOLDER_FLAGS, Mode::empty())?;
            if self.open.len() == CACHED_FOLDERS {
                self.open.remove(0);
            }
            self.open.push((key.to_vec(), fd));
        }
        Ok(&self.open[self.open.len() - 1].1)
    }
}

/// Turns one walked entry into a manifest entry; `None` for skipped kinds.
fn visit(root_len: usize, dent: &ignore::DirEntry, folders: &mut FolderCache) -> Result<Option<ManifestEntry>, ignore::Error> {
    let path = dent.path();
    let io_error = |e: nix::Error| ignore::Error::WithPath { path: path.to_path_buf(), err: Box::new(ignore::Error::Io(e.into())) };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io_error(nix::Error::EINVAL));
    };
    // The walker builds every path as `root.join(...)`: the relative part
    // follows the root's bytes and one `/` (none if the root ends in one).
    let bytes = path.as_os_str().as_bytes();
    let rel = bytes.get(root_len..).unwrap_or_default();
    let rel = rel.strip_prefix(b"/").unwrap_or(rel).to_vec();
    let dir = folders.get(parent).map_err(io_error)?;
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_error)?;
    let target = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
        nix::fcntl::readlinkat(dir, name).map_err(io_error)?.into_vec()
    } else {
        Vec::new()
    };
    Ok(stat_entry(rel, &st, target))
}

/// The manifest entry for `st` (from `fstatat` without following symlinks);
/// `None` for kinds a snapshot does not hold. Agrees with [`entry`].
fn stat_entry(path: Vec<u8>, st: &FileStat, link_target: Vec<u8>) -> Option<ManifestEntry> {
    let format = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let kind = match format {
        SFlag::S_IFREG => EntryKind::EntryFile,
        SFlag::S_IFDIR => EntryKind::EntryDirectory,
        SFlag::S_IFLNK => EntryKind::EntrySymlink,
        _ => return None,
    };
    Some(ManifestEntry {
        path,
        kind: kind as i32,
        size: if kind == EntryKind::EntryFile { u64::try_from(st.st_size).unwrap_or(0) } else { 0 },
        mtime_ns: st.st_mtime.saturating_mul(1_000_000_000).saturating_add(st.st_mtime_nsec),
        // `mode_t` is u32 on Linux but u16 on macOS.
        #[allow(clippy::useless_conversion)]
        mode: if kind == EntryKind::EntrySymlink { 0 } else { u32::from(st.st_mode) & SNAPSHOT_MODE_BITS },
        link_target,
    })
}

/// The manifest entry for `meta` (from lstat); `None` for kinds a snapshot
/// does not hold.
pub fn entry(path: Vec<u8>, meta: &std::fs::Metadata, link_target: Vec<u8>) -> Option<ManifestEntry> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        EntryKind::EntryFile
    } else if ft.is_dir() {
        EntryKind::EntryDirectory
    } else if ft.is_symlink() {
        EntryKind::EntrySymlink
    } else {
        return None;
    };
    Some(ManifestEntry {
        path,
        kind: kind as i32,
        size: if ft.is_file() { meta.len() } else { 0 },
        mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        mode: if ft.is_symlink() { 0 } else { meta.permissions().mode() & SNAPSHOT_MODE_BITS },
        link_target,
    })
}

/// Whether two entries for the same path need no transfer: same kind, and
/// same size, mtime and mode (files), mode and mtime (folders), or target and
/// mtime (symlinks). Contents are never compared, as rsync's quick check.
pub fn unchanged(a: &ManifestEntry, b: &ManifestEntry) -> bool {
    if a.kind != b.kind || a.mtime_ns != b.mtime_ns {
        return false;
    }
    match EntryKind::try_from(a.kind) {
        Ok(EntryKind::EntryFile) => a.size == b.size && a.mode == b.mode,
        Ok(EntryKind::EntryDirectory) => a.mode == b.mode,
        Ok(EntryKind::EntrySymlink) => a.link_target == b.link_target,
        _ => false,
    }
}

/// Whether two entries for the same path are the same to a synced
/// workspace, which keeps both sides alike in both directions: files by
/// size, mtime and mode (as [`unchanged`]), symlinks by target, folders by
/// mode. A folder's mtime changes whenever something inside it does, on
/// each side on its own, so it is not compared (a synced workspace does not
/// keep folder mtimes; `--ro` snapshots do).
pub fn same(a: &ManifestEntry, b: &ManifestEntry) -> bool {
    if a.kind != b.kind {
        return false;
    }
    match EntryKind::try_from(a.kind) {
        Ok(EntryKind::EntryFile) => a.size == b.size && a.mtime_ns == b.mtime_ns && a.mode == b.mode,
        Ok(EntryKind::EntryDirectory) => a.mode == b.mode,
        Ok(EntryKind::EntrySymlink) => a.link_target == b.link_target,
        _ => false,
    }
}

/// [`same`] for entries that may be absent: two absences are the same.
pub fn same_or_absent(a: Option<&ManifestEntry>, b: Option<&ManifestEntry>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The manifest entry of `name` in the folder `dir` (not following a
/// symlink), relative path `rel`; `None` when it is missing or of a kind a
/// tree does not hold.
pub fn stat_at(dir: &impl std::os::fd::AsFd, name: &[u8], rel: Vec<u8>) -> nix::Result<Option<ManifestEntry>> {
    let st = match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(nix::Error::ENOENT | nix::Error::ENOTDIR) => return Ok(None),
        Err(e) => return Err(e),
    };
    let target = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
        match nix::fcntl::readlinkat(dir, name) {
            Ok(t) => t.into_vec(),
            Err(nix::Error::ENOENT | nix::Error::EINVAL) => return Ok(None),
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    Ok(stat_entry(rel, &st, target))
}

fn walk_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// The descriptor-relative walk reports what `lstat` (via [`entry`]) does,
    /// whether or not the root is given with a trailing `/`.
    #[test]
    fn walk_agrees_with_lstat() {
        let dir = std::env::temp_dir().join(format!("hutch-tree-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f.txt"), "data").unwrap();
        std::fs::write(dir.join("top"), "x").unwrap();
        std::fs::set_permissions(dir.join("top"), std::fs::Permissions::from_mode(0o750)).unwrap();
        symlink("a/b/f.txt", dir.join("link")).unwrap();
        symlink("/nowhere", dir.join("a/dangling")).unwrap();
        for root in [dir.clone(), Path::new(&format!("{}/", dir.display())).to_path_buf()] {
            let tree = walk(&root, &WalkRules::default()).unwrap();
            let expected: Vec<ManifestEntry> = ["a", "a/b", "a/b/f.txt", "a/dangling", "link", "top"]
                .iter()
                .map(|rel| {
                    let full = dir.join(rel);
                    let meta = std::fs::symlink_metadata(&full).unwrap();
                    let target = std::fs::read_link(&full).map(|t| t.as_os_str().as_bytes().to_vec()).unwrap_or_default();
                    entry(rel.as_bytes().to_vec(), &meta, target).unwrap()
                })
                .collect();
            assert_eq!(tree.entries, expected);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
