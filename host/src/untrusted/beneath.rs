//! Files below a folder the host owns (the workspace), reached by a path
//! the guest named, without ever leaving that folder.
//!
//! A [`GuestPath`] is relative and plain, but the project itself may hold
//! symlinks (the guest writes into a shared workspace; a patch may have
//! made one), and joining a path onto the workspace would follow them out
//! of it. [`Beneath`] opens the root once and reaches every path one name
//! at a time with `openat(…, O_DIRECTORY | O_NOFOLLOW)`: a symlink (or a
//! file) where a folder should be is refused, never followed. The last
//! name is looked at with `fstatat(AT_SYMLINK_NOFOLLOW)` before it is
//! opened, and only regular files are opened (`O_NOFOLLOW | O_NONBLOCK`,
//! then checked again), so a FIFO or device swapped in cannot hang or
//! disturb hutch. Files are written under a fresh name (`O_EXCL`) and
//! renamed into place. The same code runs on Linux and macOS (no
//! `openat2`): a path of a project is a few names deep, one `openat` each.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};

use super::limits::{Exceeded, Limit};
use super::path::GuestPath;

/// A folder the host owns, opened once, that guest-named paths are reached
/// below.
#[derive(Debug)]
pub struct Beneath {
    root: OwnedFd,
    at: PathBuf,
}

/// Why a path below the root could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    /// A folder on the way is a symlink.
    #[error("{path}: passes through a symlink, which hutch does not follow")]
    Symlink {
        /// The path, escaped.
        path: String,
    },
    /// Something on the way is not a folder.
    #[error("{path}: passes through something that is not a folder")]
    NotAFolder {
        /// The path, escaped.
        path: String,
    },
    /// The path is not what the operation needs (a regular file to read, a
    /// symlink to remove).
    #[error("{path} is {found}, not {wanted}")]
    Kind {
        /// The path, escaped.
        path: String,
        /// What it is.
        found: &'static str,
        /// What it had to be.
        wanted: &'static str,
    },
    /// A file is larger than the caller accepts.
    #[error("{path}: {source}")]
    TooLarge {
        /// The path, escaped.
        path: String,
        /// The cap.
        #[source]
        source: Exceeded,
    },
    /// The OS failed.
    #[error("{path}: {source}")]
    Io {
        /// The path, escaped.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// What a path is, looked at without following a symlink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symlink.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a folder",
            Kind::Symlink => "a symlink",
            Kind::Other => "a special file",
        }
    }
}

/// A path's kind and metadata (of the symlink itself, for a symlink).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl From<&FileStat> for Stat {
    fn from(st: &FileStat) -> Stat {
        let kind = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        #[allow(clippy::unnecessary_cast)] // the field types differ between Linux and macOS
        let (mode, size, secs, nanos) = (st.st_mode as u32 & 0o7777, st.st_size as u64, st.st_mtime as i64, st.st_mtime_nsec as i64);
        Stat { kind, mode, size, mtime_ns: secs.saturating_mul(1_000_000_000).saturating_add(nanos) }
    }
}

/// Suffix of the next temporary name, unique within this process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl Beneath {
    /// Opens `root`, a folder the host trusts (its own path may hold
    /// symlinks: it is the user's, not the guest's).
    pub fn open(root: &Path) -> Result<Beneath, BeneathError> {
        let file = File::open(root).map_err(|source| BeneathError::Io { path: root.display().to_string(), source })?;
        if !file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(BeneathError::Kind { path: root.display().to_string(), found: "not a folder", wanted: "a folder" });
        }
        Ok(Beneath { root: file.into(), at: root.to_path_buf() })
    }

    /// The root's host path.
    pub fn root(&self) -> &Path {
        &self.at
    }

    /// `path` as a host path (for messages and for tools that take paths;
    /// never to open: that would follow symlinks).
    pub fn host_path(&self, path: &GuestPath) -> PathBuf {
        self.at.join(path.as_path())
    }

    /// What `path` is, `None` when it (or a folder on its way) does not
    /// exist. A symlink on the way is an error, not a missing path.
    pub fn stat(&self, path: &GuestPath) -> Result<Option<Stat>, BeneathError> {
        let Some(parent) = self.parent(path, false)? else { return Ok(None) };
        match fstatat(&parent, path.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Stat::from(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(os(path, e)),
        }
    }

    /// The contents of the regular file `path`, refused (without reading
    /// past it) when larger than `limit`; `None` when it does not exist.
    pub fn read_file(&self, path: &GuestPath, limit: Limit) -> Result<Option<Vec<u8>>, BeneathError> {
        let Some(mut file) = self.open_file(path)? else { return Ok(None) };
        let mut data = Vec::new();
        (&mut file).take(limit.max.saturating_add(1)).read_to_end(&mut data).map_err(|e| io_error(path, e))?;
        limit.check_len(data.len()).map_err(|source| BeneathError::TooLarge { path: path.shown(), source })?;
        Ok(Some(data))
    }

    /// Opens the regular file `path` for reading; `None` when it does not
    /// exist. Anything else there (a symlink, a FIFO) is refused unopened.
    pub fn open_file(&self, path: &GuestPath) -> Result<Option<File>, BeneathError> {
        let Some(parent) = self.parent(path, false)? else { return Ok(None) };
        let name = path.file_name();
        match fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => expect_kind(path, &Stat::from(&st), &Kind::File)?,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(os(path, e)),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = match openat(&parent, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(BeneathError::Kind { path: path.shown(), found: "a symlink", wanted: "a regular file" }),
            Err(e) => return Err(os(path, e)),
        };
        let file = File::from(fd);
        // Swapped between the look and the open: look again at what was opened.
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        if !meta.is_file() {
            return Err(BeneathError::Kind { path: path.shown(), found: "not a regular file", wanted: "a regular file" });
        }
        Ok(Some(file))
    }

    /// The target of the symlink `path`; `None` when it does not exist.
    pub fn read_link(&self, path: &GuestPath) -> Result<Option<Vec<u8>>, BeneathError> {
        let Some(parent) = self.parent(path, false)? else { return Ok(None) };
        match readlinkat(&parent, path.file_name()) {
            Ok(target) => Ok(Some(target.into_vec())),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::EINVAL) => Err(BeneathError::Kind { path: path.shown(), found: "not a symlink", wanted: "a symlink" }),
            Err(e) => Err(os(path, e)),
        }
    }

    /// Writes `contents` (at most `limit`) to the regular file `path` with
    /// `mode`, creating missing folders on the way: under a fresh name
    /// first, then renamed over whatever file or symlink was there (a
    /// folder there is an error).
    pub fn write_file(&self, path: &GuestPath, mode: u32, contents: &mut dyn Read, limit: Limit) -> Result<u64, BeneathError> {
        let parent = self.parent(path, true)?.ok_or_else(|| os(path, Errno::ENOENT))?;
        let temp = temp_name();
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&parent, temp.as_slice(), flags, Mode::from_bits_truncate(0o600)).map_err(|e| os(path, e))?;
        let written = (|| {
            let mut file = File::from(fd);
            let n = io::copy(&mut contents.take(limit.max.saturating_add(1)), &mut file).map_err(|e| io_error(path, e))?;
            limit.check(n).map_err(|source| BeneathError::TooLarge { path: path.shown(), source })?;
            file.flush().map_err(|e| io_error(path, e))?;
            fchmod(&file, Mode::from_bits_truncate(mode & 0o777)).map_err(|e| os(path, e))?;
            self.replace(&parent, &temp, path)?;
            Ok(n)
        })();
        if written.is_err() {
            let _ = unlinkat(&parent, temp.as_slice(), UnlinkatFlags::NoRemoveDir);
        }
        written
    }

    /// Makes `path` a symlink to `target`, creating missing folders on the
    /// way, replacing a file or symlink there.
    pub fn symlink(&self, path: &GuestPath, target: &[u8]) -> Result<(), BeneathError> {
        let parent = self.parent(path, true)?.ok_or_else(|| os(path, Errno::ENOENT))?;
        let temp = temp_name();
        symlinkat(OsStr::from_bytes(target), &parent, temp.as_slice()).map_err(|e| os(path, e))?;
        self.replace(&parent, &temp, path).inspect_err(|_| {
            let _ = unlinkat(&parent, temp.as_slice(), UnlinkatFlags::NoRemoveDir);
        })
    }

    /// Creates the folder `path` (and missing ones on its way); an existing
    /// folder is fine.
    pub fn create_dir(&self, path: &GuestPath) -> Result<(), BeneathError> {
        let parent = self.parent(path, true)?.ok_or_else(|| os(path, Errno::ENOENT))?;
        open_dir(parent.as_fd(), path.file_name(), true).map(drop).map_err(|e| e.at(path))
    }

    /// Removes the file or symlink `path` (never a folder); a missing one is
    /// fine.
    pub fn remove_file(&self, path: &GuestPath) -> Result<(), BeneathError> {
        let Some(parent) = self.parent(path, false)? else { return Ok(()) };
        match unlinkat(&parent, path.file_name(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EISDIR | Errno::EPERM) if self.stat(path)?.is_some_and(|s| s.kind == Kind::Dir) => {
                Err(BeneathError::Kind { path: path.shown(), found: "a folder", wanted: "a file or symlink" })
            }
            Err(e) => Err(os(path, e)),
        }
    }

    /// Removes the symlink `path` when it still points at `target` (what
    /// hutch made it), and nothing else; whether it did.
    pub fn remove_symlink_to(&self, path: &GuestPath, target: &[u8]) -> Result<bool, BeneathError> {
        match self.read_link(path) {
            Ok(Some(now)) if now == target => {
                self.remove_file(path)?;
                Ok(true)
            }
            Ok(_) | Err(BeneathError::Kind { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the empty folder `path`; a missing one is fine.
    pub fn remove_dir(&self, path: &GuestPath) -> Result<(), BeneathError> {
        let Some(parent) = self.parent(path, false)? else { return Ok(()) };
        match unlinkat(&parent, path.file_name(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(os(path, e)),
        }
    }

    /// Renames `temp` in `parent` to `path`'s name, refusing to replace a folder.
    fn replace(&self, parent: &OwnedFd, temp: &[u8], path: &GuestPath) -> Result<(), BeneathError> {
        if let Ok(st) = fstatat(parent, path.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            let found = Stat::from(&st);
            if found.kind == Kind::Dir {
                return Err(BeneathError::Kind { path: path.shown(), found: "a folder", wanted: "a file or symlink" });
            }
        }
        renameat(parent, temp, parent, path.file_name()).map_err(|e| os(path, e))
    }

    /// The folder holding `path`'s last name, reached one name at a time
    /// without following symlinks; `None` when one is missing (created
    /// instead when `create`).
    fn parent(&self, path: &GuestPath, create: bool) -> Result<Option<OwnedFd>, BeneathError> {
        let names: Vec<&[u8]> = path.components().collect();
        let mut dir = self.root.try_clone().map_err(|e| io_error(path, e))?;
        for name in &names[..names.len() - 1] {
            dir = match open_dir(dir.as_fd(), name, create) {
                Ok(next) => next,
                Err(NotOpened::Missing) => return Ok(None),
                Err(e) => return Err(e.at(path)),
            };
        }
        Ok(Some(dir))
    }
}

/// Why one folder on the way could not be opened.
enum NotOpened {
    Symlink,
    NotAFolder,
    Missing,
    Os(Errno),
}

impl NotOpened {
    fn at(self, path: &GuestPath) -> BeneathError {
        match self {
            NotOpened::Symlink => BeneathError::Symlink { path: path.shown() },
            NotOpened::NotAFolder => BeneathError::NotAFolder { path: path.shown() },
            NotOpened::Missing => os(path, Errno::ENOENT),
            NotOpened::Os(e) => os(path, e),
        }
    }
}

/// Opens `name` in `parent` as a folder, refusing symlinks and non-folders;
/// a missing one is created (mode 0755) when `create`.
fn open_dir(parent: BorrowedFd<'_>, name: &[u8], create: bool) -> Result<OwnedFd, NotOpened> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    match openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) if create => {
            match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(NotOpened::Os(e)),
            }
            openat(parent, name, flags, Mode::empty()).map_err(|e| classify(parent, name, e))
        }
        Err(e) => Err(classify(parent, name, e)),
    }
}

/// Names the refusal: Linux says ENOTDIR or ELOOP for a symlink opened with
/// `O_DIRECTORY | O_NOFOLLOW`, so look at what is there.
fn classify(parent: BorrowedFd<'_>, name: &[u8], e: Errno) -> NotOpened {
    match e {
        Errno::ELOOP | Errno::ENOTDIR => match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if Stat::from(&st).kind == Kind::Symlink => NotOpened::Symlink,
            _ if e == Errno::ELOOP => NotOpened::Symlink,
            _ => NotOpened::NotAFolder,
        },
        Errno::ENOENT => NotOpened::Missing,
        e => NotOpened::Os(e),
    }
}

fn expect_kind(path: &GuestPath, found: &Stat, wanted: &Kind) -> Result<(), BeneathError> {
    if &found.kind == wanted {
        Ok(())
    } else {
        Err(BeneathError::Kind { path: path.shown(), found: found.kind.name(), wanted: wanted.name() })
    }
}

fn temp_name() -> Vec<u8> {
    format!(".hutch-{}-{}.tmp", std::process::id(), NEXT_TEMP.fetch_add(1, Ordering::Relaxed)).into_bytes()
}

fn os(path: &GuestPath, e: Errno) -> BeneathError {
    BeneathError::Io { path: path.shown(), source: e.into() }
}

fn io_error(path: &GuestPath, source: io::Error) -> BeneathError {
    BeneathError::Io { path: path.shown(), source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;
    use crate::untrusted::limits;

    fn p(path: &str) -> GuestPath {
        GuestPath::from_bytes(path.as_bytes()).unwrap()
    }

    /// A workspace `ws` with `src/a.txt`, a symlink `out -> ../secret` (a
    /// folder beside it), `loop -> loop`, and a FIFO.
    fn tree() -> (tempfile::TempDir, Beneath) {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::create_dir(dir.path().join("secret")).unwrap();
        std::fs::write(dir.path().join("secret/key"), "hunter2").unwrap();
        std::fs::write(ws.join("src/a.txt"), "a\n").unwrap();
        symlink("../secret", ws.join("out")).unwrap();
        symlink("../secret/key", ws.join("key")).unwrap();
        nix::unistd::mkfifo(&ws.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let beneath = Beneath::open(&ws).unwrap();
        (dir, beneath)
    }

    #[test]
    fn files_inside_are_read_and_nothing_through_a_symlink_is() {
        let (_dir, ws) = tree();
        assert_eq!(ws.read_file(&p("src/a.txt"), limits::DIFF_FILE_BYTES).unwrap().unwrap(), b"a\n");
        assert_eq!(ws.read_file(&p("src/none"), limits::DIFF_FILE_BYTES).unwrap(), None);
        assert_eq!(ws.read_file(&p("none/x"), limits::DIFF_FILE_BYTES).unwrap(), None);
        assert!(matches!(ws.read_file(&p("out/key"), limits::DIFF_FILE_BYTES), Err(BeneathError::Symlink { .. })));
        assert!(matches!(ws.read_file(&p("key"), limits::DIFF_FILE_BYTES), Err(BeneathError::Kind { .. })));
        assert!(matches!(ws.read_file(&p("src/a.txt/x"), limits::DIFF_FILE_BYTES), Err(BeneathError::NotAFolder { .. })));
        // A FIFO is refused at once, not opened (which would block).
        assert!(matches!(ws.read_file(&p("fifo"), limits::DIFF_FILE_BYTES), Err(BeneathError::Kind { .. })));
        let small = Limit { name: "test", max: 1, unit: limits::Unit::Bytes };
        assert!(matches!(ws.read_file(&p("src/a.txt"), small), Err(BeneathError::TooLarge { .. })));
        assert_eq!(ws.stat(&p("key")).unwrap().unwrap().kind, Kind::Symlink);
        assert_eq!(ws.read_link(&p("key")).unwrap().unwrap(), b"../secret/key");
    }

    #[test]
    fn writes_stay_inside_and_replace_rather_than_follow() {
        let (dir, ws) = tree();
        let limit = limits::DIFF_FILE_BYTES;
        ws.write_file(&p("new/deep/b.txt"), 0o755, &mut &b"b"[..], limit).unwrap();
        let written = ws.root().join("new/deep/b.txt");
        assert_eq!(std::fs::read(&written).unwrap(), b"b");
        assert_eq!(std::fs::metadata(&written).unwrap().permissions().mode() & 0o777, 0o755);
        // Writing "through" the symlink is refused; writing the symlink's own
        // name replaces the link, and the file it pointed at is untouched.
        assert!(matches!(ws.write_file(&p("out/key"), 0o644, &mut &b"x"[..], limit), Err(BeneathError::Symlink { .. })));
        ws.write_file(&p("key"), 0o644, &mut &b"mine"[..], limit).unwrap();
        assert_eq!(std::fs::read(dir.path().join("secret/key")).unwrap(), b"hunter2");
        assert_eq!(std::fs::read(ws.root().join("key")).unwrap(), b"mine");
        assert!(matches!(ws.write_file(&p("src"), 0o644, &mut &b""[..], limit), Err(BeneathError::Kind { .. })));

        ws.symlink(&p("link"), b"/etc/passwd").unwrap();
        assert_eq!(ws.read_link(&p("link")).unwrap().unwrap(), b"/etc/passwd");
        assert!(!ws.remove_symlink_to(&p("link"), b"/elsewhere").unwrap());
        assert!(ws.remove_symlink_to(&p("link"), b"/etc/passwd").unwrap());
        assert_eq!(ws.stat(&p("link")).unwrap(), None);
        assert!(!ws.remove_symlink_to(&p("src"), b"x").unwrap(), "a folder is not removed");

        ws.remove_file(&p("out")).unwrap();
        assert!(dir.path().join("secret/key").exists(), "removing a symlink leaves its target");
        assert!(matches!(ws.remove_file(&p("src")), Err(BeneathError::Kind { .. })));
        ws.create_dir(&p("made/here")).unwrap();
        ws.remove_dir(&p("made/here")).unwrap();
        assert!(ws.root().join("made").is_dir() && !ws.root().join("made/here").exists());
        let leftovers: Vec<_> =
            std::fs::read_dir(ws.root()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
