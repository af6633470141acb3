//! Applying a Sync in the guest: deletions, then the tar stream, then the
//! folders' final modes and mtimes.
//!
//! Every path goes through [`validate`]; files are written to a temporary name
//! and renamed over the old one (so a running program or a symlink in the way
//! is replaced, never written through), new files are created with
//! `O_EXCL | O_NOFOLLOW`. Folders get their final mode and mtime last, deepest
//! first, because writing inside a folder changes its mtime.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use hutch_proto::v1::{EntryKind, ManifestEntry, SyncSummary};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstatat, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};
use tar::EntryType;

use super::validate::{self, OpenError, Refused, SafeRoot};

/// Why applying a Sync failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The host sent something the agent does not accept.
    #[error("refused {path:?}: {why}")]
    Refused {
        /// The path as sent.
        path: String,
        /// Why.
        why: Refused,
    },
    /// The archive is not a valid zstd-compressed tar stream.
    #[error("bad archive: {0}")]
    Archive(io::Error),
    /// The OS failed on a path.
    #[error("{path:?}: {source}")]
    Os {
        /// The path.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// The snapshot's entries as the agent expects them to be after the sync:
/// the pre-sync walk, updated with every deletion and every received entry.
pub type Expected = BTreeMap<Vec<u8>, ManifestEntry>;

/// An in-progress application of one Sync.
pub struct Applier {
    root: SafeRoot,
    /// What the snapshot holds, as the host sent it.
    pub expected: Expected,
    /// Folders whose mode and mtime must be set at the end.
    touched: BTreeSet<Vec<u8>>,
    /// What was done.
    pub summary: SyncSummary,
    /// Whether anything changed at all.
    pub changed: bool,
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl Applier {
    /// Starts applying to `root`, whose entries are now `expected`.
    pub fn new(root: SafeRoot, expected: Expected) -> Self {
        Applier { root, expected, touched: BTreeSet::new(), summary: SyncSummary::default(), changed: false }
    }

    fn refused(path: &[u8], why: Refused) -> ApplyError {
        ApplyError::Refused { path: shown(path), why }
    }

    fn os(path: &[u8], e: impl Into<io::Error>) -> ApplyError {
        ApplyError::Os { path: shown(path), source: e.into() }
    }

    fn open_error(path: &[u8], e: OpenError) -> ApplyError {
        match e {
            OpenError::Refused(why) => Self::refused(path, why),
            OpenError::Missing => Self::os(path, io::Error::from(io::ErrorKind::NotFound)),
            OpenError::Os(errno) => Self::os(path, errno),
        }
    }

    /// Marks the parent folder of `path` for its mode/mtime to be restored.
    fn touch_parent(&mut self, path: &[u8]) {
        let parent = path.iter().rposition(|b| *b == b'/').map_or(&path[..0], |i| &path[..i]);
        self.touched.insert(parent.to_vec());
    }

    /// Removes `path` (a folder with everything in it); a missing path is fine.
    pub fn delete(&mut self, path: &[u8]) -> Result<(), ApplyError> {
        let parts = validate::components(path).map_err(|why| Self::refused(path, why))?;
        let clean = parts.join(&b'/');
        self.root.forget();
        let name = parts[parts.len() - 1];
        let parent = match self.root.parent(&parts, false) {
            Ok(fd) => fd,
            Err(OpenError::Missing) => return Ok(()),
            Err(e) => return Err(Self::open_error(path, e)),
        };
        match stat_at(parent, name) {
            Ok(st) if is(&st, SFlag::S_IFDIR) => remove_tree(parent, name).map_err(|e| Self::os(path, e))?,
            Ok(_) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| Self::os(path, e))?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Self::os(path, e)),
        }
        self.root.forget();
        let mut prefix = clean.clone();
        prefix.push(b'/');
        self.expected.remove(&clean);
        let below: Vec<Vec<u8>> =
            self.expected.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
        for key in below {
            self.expected.remove(&key);
        }
        self.touch_parent(&clean);
        self.summary.deleted += 1;
        self.changed = true;
        Ok(())
    }

    /// Applies every entry of a zstd-compressed tar stream.
    pub fn unpack(&mut self, compressed: &mut impl Read) -> Result<(), ApplyError> {
        let decoder = zstd::stream::read::Decoder::new(compressed).map_err(ApplyError::Archive)?;
        let mut archive = tar::Archive::new(decoder);
        for entry in archive.entries().map_err(ApplyError::Archive)? {
            let mut entry = entry.map_err(ApplyError::Archive)?;
            self.entry(&mut entry)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        let kind = match kind {
            EntryType::Regular | EntryType::Continuous => EntryKind::EntryFile,
            EntryType::Directory => EntryKind::EntryDirectory,
            EntryType::Symlink => EntryKind::EntrySymlink,
            EntryType::XGlobalHeader => return Ok(()),
            EntryType::Link => return Err(Self::refused(&raw, Refused::HardLink)),
            EntryType::Char | EntryType::Block => return Err(Self::refused(&raw, Refused::Special("device"))),
            EntryType::Fifo => return Err(Self::refused(&raw, Refused::Special("fifo"))),
            _ => return Err(Self::refused(&raw, Refused::Special("this kind of"))),
        };
        let parts = validate::components(&raw).map_err(|why| Self::refused(&raw, why))?;
        let path = parts.join(&b'/');
        let mode = entry.header().mode().map_err(ApplyError::Archive)? & 0o7777;
        let mtime_ns = mtime_ns(entry)?;
        let target = match kind {
            EntryKind::EntrySymlink => match entry.link_name_bytes() {
                Some(t) if !t.is_empty() => t.into_owned(),
                _ => return Err(Self::refused(&raw, Refused::NoTarget)),
            },
            _ => Vec::new(),
        };
        let existed = self.expected.contains_key(&path);
        let name = parts[parts.len() - 1];
        let parent = self.root.parent(&parts, true).map_err(|e| Self::open_error(&raw, e))?;
        let size = match kind {
            EntryKind::EntryFile => {
                let n = write_file(parent, name, existed, entry, mode, mtime_ns).map_err(|e| match e {
                    WriteError::Refused(why) => Self::refused(&raw, why),
                    WriteError::Io(e) => Self::os(&raw, e),
                })?;
                self.summary.files += 1;
                self.summary.bytes += n;
                n
            }
            EntryKind::EntryDirectory => {
                make_dir(parent, name).map_err(|e| match e {
                    WriteError::Refused(why) => Self::refused(&raw, why),
                    WriteError::Io(e) => Self::os(&raw, e),
                })?;
                self.touched.insert(path.clone());
                self.summary.directories += 1;
                0
            }
            _ => {
                make_symlink(parent, name, &target, mtime_ns).map_err(|e| Self::os(&raw, e))?;
                self.summary.symlinks += 1;
                0
            }
        };
        self.touch_parent(&path);
        self.changed = true;
        let stored = ManifestEntry { path: path.clone(), kind: kind as i32, size, mtime_ns, mode, link_target: target };
        self.expected.insert(path, stored);
        Ok(())
    }

    /// Gives every touched folder (deepest first) and the root their
    /// expected mode and mtime.
    pub fn finish(&mut self, root: Option<&ManifestEntry>) -> Result<(), ApplyError> {
        self.root.forget();
        let touched = std::mem::take(&mut self.touched);
        for path in touched.iter().rev().filter(|p| !p.is_empty()) {
            let Some(want) = self.expected.get(path) else { continue };
            if want.kind != EntryKind::EntryDirectory as i32 {
                continue;
            }
            let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
            let fd = match self.root.dir(&parts) {
                Ok(fd) => fd,
                Err(OpenError::Missing) => continue,
                Err(e) => return Err(Self::open_error(path, e)),
            };
            set_meta(fd.as_fd(), want.mode, want.mtime_ns).map_err(|e| Self::os(path, e))?;
        }
        if let Some(root) = root {
            set_meta(self.root.fd(), root.mode, root.mtime_ns).map_err(|e| Self::os(b".", e))?;
        }
        Ok(())
    }
}

fn mtime_ns<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<i64, ApplyError> {
    if let Some(pax) = entry.pax_extensions().map_err(ApplyError::Archive)? {
        for ext in pax.flatten() {
            if ext.key_bytes() == b"mtime"
                && let Some(ns) = std::str::from_utf8(ext.value_bytes()).ok().and_then(parse_pax_time)
            {
                return Ok(ns);
            }
        }
    }
    let secs = entry.header().mtime().map_err(ApplyError::Archive)?;
    Ok(i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000_000).saturating_mul(1_000_000_000))
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative) into nanoseconds.
pub fn parse_pax_time(s: &str) -> Option<i64> {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    let total = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if neg { -total } else { total })
}

enum WriteError {
    Refused(Refused),
    Io(io::Error),
}

impl From<Errno> for WriteError {
    fn from(e: Errno) -> Self {
        WriteError::Io(e.into())
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// Temporary name for a file being replaced; in the same folder so the
/// rename is atomic.
const TEMP_NAME: &[u8] = b".hutch-sync.tmp";

fn write_file(
    parent: BorrowedFd<'_>,
    name: &[u8],
    existed: bool,
    data: &mut impl Read,
    mode: u32,
    mtime_ns: i64,
) -> Result<u64, WriteError> {
    let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let direct = if existed { None } else { openat(parent, name, create, Mode::from_bits_truncate(0o600)).ok() };
    let (fd, temp) = match direct {
        Some(fd) => (fd, false),
        None => {
            let _ = unlinkat(parent, TEMP_NAME, UnlinkatFlags::NoRemoveDir);
            (openat(parent, TEMP_NAME, create, Mode::from_bits_truncate(0o600))?, true)
        }
    };
    let mut file = std::fs::File::from(fd);
    let written = io::copy(data, &mut file)?;
    file.flush()?;
    set_meta(file.as_fd(), mode, mtime_ns)?;
    drop(file);
    if temp {
        if let Ok(st) = stat_at(parent, name)
            && is(&st, SFlag::S_IFDIR)
        {
            let _ = unlinkat(parent, TEMP_NAME, UnlinkatFlags::NoRemoveDir);
            return Err(WriteError::Refused(Refused::Occupied("a folder")));
        }
        renameat(parent, TEMP_NAME, parent, name)?;
    }
    Ok(written)
}

fn make_dir(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), WriteError> {
    match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => match stat_at(parent, name) {
            Ok(st) if is(&st, SFlag::S_IFDIR) => Ok(()),
            Ok(st) if is(&st, SFlag::S_IFLNK) => Err(WriteError::Refused(Refused::Occupied("a symlink"))),
            Ok(_) => Err(WriteError::Refused(Refused::Occupied("not a folder"))),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

fn make_symlink(parent: BorrowedFd<'_>, name: &[u8], target: &[u8], mtime_ns: i64) -> Result<(), Errno> {
    match symlinkat(target, parent, name) {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            let _ = unlinkat(parent, TEMP_NAME, UnlinkatFlags::NoRemoveDir);
            symlinkat(target, parent, TEMP_NAME)?;
            if let Err(e) = renameat(parent, TEMP_NAME, parent, name) {
                let _ = unlinkat(parent, TEMP_NAME, UnlinkatFlags::NoRemoveDir);
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    super::owner::own_at(parent, name)?;
    utimensat(parent, name, &TimeSpec::UTIME_OMIT, &timespec(mtime_ns), UtimensatFlags::NoFollowSymlink)
}

/// Sets a file's or folder's owner (the command user's), mode and mtime
/// through its descriptor (chown first: it clears set-id bits).
fn set_meta(fd: BorrowedFd<'_>, mode: u32, mtime_ns: i64) -> Result<(), Errno> {
    super::owner::own(fd)?;
    fchmod(fd, Mode::from_bits_truncate(mode))?;
    futimens(fd, &TimeSpec::UTIME_OMIT, &timespec(mtime_ns))
}

fn timespec(ns: i64) -> TimeSpec {
    TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

fn stat_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<FileStat, Errno> {
    fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn is(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// Removes the folder `name` in `parent` and everything in it, by
/// descriptor, never following a symlink.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let fd = validate::open_dir(parent, name, false).map_err(|e| match e {
        OpenError::Os(e) => e,
        OpenError::Missing => Errno::ENOENT,
        OpenError::Refused(_) => Errno::ELOOP,
    })?;
    let mut dir = nix::dir::Dir::from_fd(fd)?;
    let mut children = Vec::new();
    for item in dir.iter() {
        let item = item?;
        let child = item.file_name().to_bytes();
        if child != b"." && child != b".." {
            children.push(child.to_vec());
        }
    }
    for child in children {
        let st = stat_at(dir.as_fd(), &child)?;
        if is(&st, SFlag::S_IFDIR) {
            remove_tree(dir.as_fd(), &child)?;
        } else {
            unlinkat(dir.as_fd(), child.as_slice(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests {
    use super::parse_pax_time;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_pax_time("12.000000001"), Some(12_000_000_001));
        assert_eq!(parse_pax_time("7"), Some(7_000_000_000));
        assert_eq!(parse_pax_time("-1.5"), Some(-1_500_000_000));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time("1.1234567890"), None);
    }
}
