//! Applying a Sync in the guest: deletions, then the tar stream, then the
//! folders' final modes and mtimes; and, when a Sync fails, the state it
//! leaves.
//!
//! Every path goes through [`validate`] and every header through
//! [`archive`]. A file that existed is written to a temporary name (unique,
//! created with `O_EXCL`, so it can neither clobber a file of that name nor
//! be clobbered by a concurrent writer) and renamed over the old one, so a
//! running program or a symlink in the way is replaced, never written
//! through; a new file is created with `O_EXCL | O_NOFOLLOW`. A write that
//! fails (or is cancelled) removes what it half wrote. Folders get their
//! final mode and mtime last, deepest first, because writing inside a folder
//! changes its mtime.
//!
//! Setuid and setgid bits are dropped: the agent writes the snapshot as its
//! own user (root in a VM), not as the host user who owns the files, so the
//! bits would grant that user's rights to the wrong one. The shared tree
//! walk leaves them out of every manifest too, so the two sides agree.
//!
//! There is no cap on a file's size: it is the host file's size, declared in
//! its header, and a project may hold large files. Only declared bytes are
//! written; a file that cannot fit in the free space of the snapshot's file
//! system is refused before a byte is written (RESOURCE_EXHAUSTED), and the
//! copy stops as soon as the call ends.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hutch_proto::tree::SNAPSHOT_MODE_BITS;
use hutch_proto::v1::{EntryKind, ManifestEntry, SnapshotState, SyncSummary};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstatat, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};

use super::archive::{self, ArchiveError, Kind};
use super::validate::{self, OpenError, Refused, SafeRoot};
use crate::limits;
use crate::untrusted::shown;

/// Why applying a Sync failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The host sent something the agent does not accept.
    #[error("refused \"{path}\": {why}")]
    Refused {
        /// The path as sent (escaped and cut).
        path: String,
        /// Why.
        why: Refused,
    },
    /// The archive is not a valid zstd-compressed tar stream.
    #[error("bad archive: {0}")]
    Archive(ArchiveError),
    /// A file does not fit in the snapshot's file system.
    #[error("\"{path}\" needs {need} bytes and the snapshot's file system has {free} free")]
    NoSpace {
        /// The file (escaped and cut).
        path: String,
        /// Its size.
        need: u64,
        /// Free bytes.
        free: u64,
    },
    /// The OS failed on a path.
    #[error("\"{path}\": {source}")]
    Os {
        /// The path (escaped and cut).
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The call ended while this was being applied.
    #[error("the call ended")]
    Cancelled,
}

/// The snapshot's entries as the agent expects them to be after the sync:
/// the pre-sync walk, updated with every deletion and every received entry.
pub type Expected = BTreeMap<Vec<u8>, ManifestEntry>;

/// Set when the call a Sync belongs to has ended: whatever is applying it
/// stops at the next chunk or entry.
pub type Cancel = Arc<AtomicBool>;

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
    /// Paths deleted, then entries written, by this call (to settle the
    /// state if it fails).
    deleted: Vec<Vec<u8>>,
    written: Vec<Vec<u8>>,
    writer: Writer,
    /// A synced workspace's push (`SyncStart.push`): `expected` is what both
    /// sides agreed on, and a path the copy holds otherwise is skipped.
    push: bool,
    /// Push only: the paths skipped (at most [`MAX_SKIPPED`]), and whether
    /// there were more.
    pub skipped: Vec<Vec<u8>>,
    /// More paths were skipped than `skipped` holds.
    pub skipped_more: bool,
}

/// Skipped paths a push lists in its summary; past it, `skipped_more` says
/// so and the host compares everything.
const MAX_SKIPPED: usize = 16_384;

/// Copies file data, with a buffer reused from file to file.
struct Writer {
    buf: Vec<u8>,
    cancel: Cancel,
    /// Suffix of the next temporary name.
    next_temp: u64,
}

/// Bytes copied per read while writing a file.
const COPY_CHUNK: usize = 256 * 1024;

/// Files at least this large are checked against the free space first.
const CHECK_SPACE_FROM: u64 = 1 << 20;

impl Applier {
    /// Starts applying to `root`, whose entries are now `expected`; stops
    /// when `cancel` is set.
    pub fn new(root: SafeRoot, expected: Expected, cancel: Cancel) -> Self {
        Applier {
            root,
            expected,
            touched: BTreeSet::new(),
            summary: SyncSummary::default(),
            changed: false,
            deleted: Vec::new(),
            written: Vec::new(),
            writer: Writer { buf: Vec::new(), cancel, next_temp: 0 },
            push: false,
            skipped: Vec::new(),
            skipped_more: false,
        }
    }

    /// Starts a synced workspace's push to `root`, where both sides agree on
    /// `agreed`: a path the copy holds otherwise (a guest change still to be
    /// reported) is left alone and listed in [`Applier::skipped`], and a
    /// folder is only removed when empty.
    pub fn for_push(root: SafeRoot, agreed: Expected, cancel: Cancel) -> Self {
        Applier { push: true, ..Applier::new(root, agreed, cancel) }
    }

    fn skip(&mut self, path: &[u8]) {
        if self.skipped.len() < MAX_SKIPPED {
            self.skipped.push(path.to_vec());
        } else {
            self.skipped_more = true;
        }
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

    fn write_error(path: &[u8], e: WriteError) -> ApplyError {
        match e {
            WriteError::Refused(why) => Self::refused(path, why),
            WriteError::Io(e) => Self::os(path, e),
            WriteError::NoSpace { need, free } => ApplyError::NoSpace { path: shown(path), need, free },
            WriteError::Cancelled => ApplyError::Cancelled,
        }
    }

    fn check_cancel(&self) -> Result<(), ApplyError> {
        if self.writer.cancel.load(Ordering::Relaxed) { Err(ApplyError::Cancelled) } else { Ok(()) }
    }

    /// Marks the parent folder of `path` for its mode/mtime to be restored.
    fn touch_parent(&mut self, path: &[u8]) {
        let parent = path.iter().rposition(|b| *b == b'/').map_or(&path[..0], |i| &path[..i]);
        self.touched.insert(parent.to_vec());
    }

    /// Removes `path` (a folder with everything in it); a missing path is fine.
    pub fn delete(&mut self, path: &[u8]) -> Result<(), ApplyError> {
        self.check_cancel()?;
        let parts = validate::components(path).map_err(|why| Self::refused(path, why))?;
        let clean = parts.join(&b'/');
        self.root.forget();
        let name = parts[parts.len() - 1];
        if self.push {
            return self.delete_agreed(&parts, &clean);
        }
        let parent = match self.root.parent(&parts, false) {
            Ok(fd) => fd,
            Err(OpenError::Missing) => return Ok(()),
            Err(e) => return Err(Self::open_error(path, e)),
        };
        match stat_at(parent, name) {
            Ok(st) if is(&st, SFlag::S_IFDIR) => remove_tree(parent, name, 0).map_err(|e| Self::os(path, e))?,
            Ok(_) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| Self::os(path, e))?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Self::os(path, e)),
        }
        self.root.forget();
        // Only a path that was part of the snapshot is remembered for the
        // failure's state: the list stays as long as the snapshot at most,
        // whatever the host sends (paths that exist nowhere cost nothing).
        if remove_below(&mut self.expected, &clean) {
            self.deleted.push(clean.clone());
        }
        self.touch_parent(&clean);
        self.summary.deleted += 1;
        self.changed = true;
        Ok(())
    }

    /// A push's delete: only what both sides agreed on, and a folder only
    /// when empty (the host sends what is inside it first).
    fn delete_agreed(&mut self, parts: &[&[u8]], clean: &[u8]) -> Result<(), ApplyError> {
        let name = parts[parts.len() - 1];
        let parent = match self.root.parent(parts, false) {
            Ok(fd) => fd,
            Err(OpenError::Missing) => return Ok(()),
            Err(e) => return Err(Self::open_error(clean, e)),
        };
        let removed = if agreed(&self.expected, parent, name, clean)? {
            match stat_at(parent, name) {
                Ok(st) if is(&st, SFlag::S_IFDIR) => unlinkat(parent, name, UnlinkatFlags::RemoveDir),
                Ok(_) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir),
                Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            Err(Errno::EEXIST)
        };
        self.root.forget();
        match removed {
            Ok(()) => {
                self.expected.remove(clean);
                self.touch_parent(clean);
                self.deleted.push(clean.to_vec());
                self.summary.deleted += 1;
                self.changed = true;
                Ok(())
            }
            // Not what was agreed, or a folder the guest put something in.
            Err(Errno::EEXIST | Errno::ENOTEMPTY) => {
                self.skip(clean);
                Ok(())
            }
            Err(e) => Err(Self::os(clean, e)),
        }
    }

    /// Applies every entry of a zstd-compressed tar stream, which is read to
    /// its end (so its checksum, if it has one, is checked).
    pub fn unpack(&mut self, compressed: &mut impl Read) -> Result<(), ApplyError> {
        let mut decoder = zstd::stream::read::Decoder::new(compressed).map_err(|e| ApplyError::Archive(e.into()))?;
        decoder.window_log_max(limits::ZSTD_WINDOW_LOG_MAX).map_err(|e| ApplyError::Archive(e.into()))?;
        let mut tar = archive::Reader::new(decoder);
        while let Some(header) = tar.next_header().map_err(ApplyError::Archive)? {
            self.check_cancel()?;
            self.entry(header, &mut tar.data())?;
        }
        Ok(())
    }

    fn entry(&mut self, header: archive::Header, data: &mut impl Read) -> Result<(), ApplyError> {
        let raw = header.path;
        let kind = match header.kind {
            Kind::File => EntryKind::EntryFile,
            Kind::Directory => EntryKind::EntryDirectory,
            Kind::Symlink => EntryKind::EntrySymlink,
            Kind::HardLink => return Err(Self::refused(&raw, Refused::HardLink)),
            Kind::Device => return Err(Self::refused(&raw, Refused::Special("device"))),
            Kind::Fifo => return Err(Self::refused(&raw, Refused::Special("fifo"))),
            Kind::Other(_) => return Err(Self::refused(&raw, Refused::Special("this kind of"))),
        };
        let parts = validate::components(&raw).map_err(|why| Self::refused(&raw, why))?;
        let path = parts.join(&b'/');
        // No setuid/setgid (see the module doc); the sticky bit is harmless.
        let mode = header.mode & SNAPSHOT_MODE_BITS;
        let mtime_ns = header.mtime_ns;
        let target = match kind {
            EntryKind::EntrySymlink if header.link.is_empty() => return Err(Self::refused(&raw, Refused::NoTarget)),
            EntryKind::EntrySymlink => header.link,
            _ => Vec::new(),
        };
        let existed = self.expected.contains_key(&path);
        let name = parts[parts.len() - 1];
        let parent = self.root.parent(&parts, true).map_err(|e| Self::open_error(&raw, e))?;
        if self.push && !agreed(&self.expected, parent, name, &path)? {
            // The guest changed it: its report comes, the host decides.
            self.skip(&path);
            return Ok(());
        }
        let parent = self.root.parent(&parts, true).map_err(|e| Self::open_error(&raw, e))?;
        let size = match kind {
            EntryKind::EntryFile => {
                let file = NewFile { name, existed, size: header.size, mode, mtime_ns };
                let n = self.writer.write_file(parent, &file, data).map_err(|e| Self::write_error(&raw, e))?;
                self.summary.files += 1;
                self.summary.bytes += n;
                n
            }
            EntryKind::EntryDirectory => {
                make_dir(parent, name).map_err(|e| Self::write_error(&raw, e))?;
                self.touched.insert(path.clone());
                self.summary.directories += 1;
                0
            }
            _ => {
                self.writer.make_symlink(parent, name, &target, mtime_ns).map_err(|e| Self::os(&raw, e))?;
                self.summary.symlinks += 1;
                0
            }
        };
        self.touch_parent(&path);
        self.changed = true;
        let stored = ManifestEntry { path: path.clone(), kind: kind as i32, size, mtime_ns, mode, link_target: target };
        self.written.push(path.clone());
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
            set_meta(self.root.fd(), root.mode & SNAPSHOT_MODE_BITS, root.mtime_ns).map_err(|e| Self::os(b".", e))?;
        }
        Ok(())
    }

    /// After a failed Sync: the entries the state should hold so that the
    /// next Sync and diff are right, or `None` if nothing changed (the saved
    /// state still holds). That is the last saved state (`old`) with what
    /// this call did on top: its deletions, and the entries it wrote. When
    /// the archive itself was corrupt (`corrupt`), the files it carried
    /// cannot be trusted: they are removed, so the next Sync sends them
    /// again, and left out of the state, so the diff does not report them.
    pub fn settle_failure(&mut self, old: Option<SnapshotState>, corrupt: bool) -> Option<Vec<ManifestEntry>> {
        if !self.changed {
            return None;
        }
        let mut entries: Expected = old.map(|s| s.entries.into_iter().map(|e| (e.path.clone(), e)).collect()).unwrap_or_default();
        for path in &self.deleted {
            remove_below(&mut entries, path);
        }
        for path in std::mem::take(&mut self.written) {
            let Some(entry) = self.expected.get(&path).cloned() else { continue };
            if corrupt && entry.kind == EntryKind::EntryFile as i32 {
                if let Err(e) = self.remove_file(&path) {
                    tracing::warn!("cannot remove \"{}\" from a corrupt sync: {e}", shown(&path));
                }
                entries.remove(&path);
            } else {
                entries.insert(path, entry);
            }
        }
        Some(entries.into_values().collect())
    }

    fn remove_file(&mut self, path: &[u8]) -> Result<(), OpenError> {
        let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        self.root.forget();
        let parent = self.root.parent(&parts, false)?;
        match unlinkat(parent, parts[parts.len() - 1], UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// In a push: whether `name` in `parent` (relative path `path`) is what
/// both sides agreed on (both absent counts).
fn agreed(expected: &Expected, parent: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<bool, ApplyError> {
    let now = hutch_proto::tree::stat_at(&parent, name, path.to_vec()).map_err(|e| Applier::os(path, e))?;
    Ok(hutch_proto::tree::same_or_absent(now.as_ref(), expected.get(path)))
}

/// Removes `path` and everything below it from `entries`; whether there
/// was anything to remove.
fn remove_below(entries: &mut Expected, path: &[u8]) -> bool {
    let mut removed = entries.remove(path).is_some();
    let mut prefix = path.to_vec();
    prefix.push(b'/');
    let below: Vec<Vec<u8>> = entries.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
    for key in below {
        removed |= entries.remove(&key).is_some();
    }
    removed
}

enum WriteError {
    Refused(Refused),
    Io(io::Error),
    NoSpace { need: u64, free: u64 },
    Cancelled,
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

/// A file entry about to be written.
struct NewFile<'a> {
    name: &'a [u8],
    /// Whether the snapshot had something at this path before the Sync.
    existed: bool,
    size: u64,
    mode: u32,
    mtime_ns: i64,
}

/// Prefix of the temporary names files and links are written under.
const TEMP_PREFIX: &str = ".hutch-sync";

/// Attempts at a free temporary name before giving up.
const TEMP_ATTEMPTS: u64 = 64;

impl Writer {
    /// A temporary name in the same folder (so the rename is atomic),
    /// unique to this agent and call.
    fn temp_name(&mut self) -> Vec<u8> {
        self.next_temp += 1;
        format!("{TEMP_PREFIX}-{}-{}.tmp", std::process::id(), self.next_temp).into_bytes()
    }

    /// Creates a new temporary file in `parent` with `O_EXCL`: a name that
    /// is taken (a guest file, another call's temp) is skipped, never reused.
    fn create_temp(&mut self, parent: BorrowedFd<'_>) -> Result<(OwnedFd, Vec<u8>), WriteError> {
        for _ in 0..TEMP_ATTEMPTS {
            let name = self.temp_name();
            match openat(parent, name.as_slice(), create_flags(), Mode::from_bits_truncate(0o600)) {
                Ok(fd) => return Ok((fd, name)),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::Io(io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name")))
    }

    fn write_file(&mut self, parent: BorrowedFd<'_>, file: &NewFile<'_>, data: &mut impl Read) -> Result<u64, WriteError> {
        if file.size >= CHECK_SPACE_FROM {
            let fs = nix::sys::statvfs::fstatvfs(parent)?;
            #[allow(clippy::useless_conversion)]
            let free = u64::from(fs.blocks_available()).saturating_mul(u64::from(fs.fragment_size()));
            if file.size > free {
                return Err(WriteError::NoSpace { need: file.size, free });
            }
        }
        let direct = if file.existed { None } else { openat(parent, file.name, create_flags(), Mode::from_bits_truncate(0o600)).ok() };
        let (fd, temp) = match direct {
            Some(fd) => (fd, None),
            None => {
                let (fd, name) = self.create_temp(parent)?;
                (fd, Some(name))
            }
        };
        let written_at = temp.as_deref().unwrap_or(file.name);
        let result = self.fill(fd, data, file).and_then(|n| {
            if let Some(temp) = &temp {
                if let Ok(st) = stat_at(parent, file.name)
                    && is(&st, SFlag::S_IFDIR)
                {
                    return Err(WriteError::Refused(Refused::Occupied("a folder")));
                }
                renameat(parent, temp.as_slice(), parent, file.name)?;
            }
            Ok(n)
        });
        if result.is_err() {
            // Half written, or never renamed into place: not part of the snapshot.
            let _ = unlinkat(parent, written_at, UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Copies exactly the file's declared size into `fd`, checking for
    /// cancellation between chunks, then sets its mode and mtime.
    fn fill(&mut self, fd: OwnedFd, data: &mut impl Read, file: &NewFile<'_>) -> Result<u64, WriteError> {
        let mut out = std::fs::File::from(fd);
        if self.buf.is_empty() && file.size > 0 {
            self.buf = vec![0; COPY_CHUNK];
        }
        let mut written = 0u64;
        while written < file.size {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(WriteError::Cancelled);
            }
            let want = usize::try_from(file.size - written).unwrap_or(usize::MAX).min(self.buf.len());
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside a file").into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            out.write_all(&self.buf[..n])?;
            written += n as u64;
        }
        set_meta(out.as_fd(), file.mode, file.mtime_ns)?;
        Ok(written)
    }

    fn make_symlink(&mut self, parent: BorrowedFd<'_>, name: &[u8], target: &[u8], mtime_ns: i64) -> Result<(), Errno> {
        match symlinkat(target, parent, name) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let mut placed = None;
                for _ in 0..TEMP_ATTEMPTS {
                    let temp = self.temp_name();
                    match symlinkat(target, parent, temp.as_slice()) {
                        Ok(()) => {
                            placed = Some(temp);
                            break;
                        }
                        Err(Errno::EEXIST) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let temp = placed.ok_or(Errno::EEXIST)?;
                if let Err(e) = renameat(parent, temp.as_slice(), parent, name) {
                    let _ = unlinkat(parent, temp.as_slice(), UnlinkatFlags::NoRemoveDir);
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        super::owner::own_at(parent, name)?;
        utimensat(parent, name, &TimeSpec::UTIME_OMIT, &timespec(mtime_ns), UtimensatFlags::NoFollowSymlink)
    }
}

fn create_flags() -> OFlag {
    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
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
/// descriptor, never following a symlink. A tree deeper than any path the
/// agent accepts (the guest can make one) is refused rather than recursed
/// into without end.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8], depth: usize) -> Result<(), Errno> {
    if depth > limits::MAX_PATH_BYTES / 2 {
        return Err(Errno::ENAMETOOLONG);
    }
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
            remove_tree(dir.as_fd(), &child, depth + 1)?;
        } else {
            unlinkat(dir.as_fd(), child.as_slice(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}
