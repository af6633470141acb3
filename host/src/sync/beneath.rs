//! Writing what the guest sent into the host project, and nowhere else.
//!
//! A synced workspace applies the guest's changes on the host, so every path
//! and link target the agent names is hostile input: it is checked here
//! ([`check_path`], [`check_link`]) and every operation is made relative to
//! a descriptor of the project root, opening one folder at a time with
//! `O_NOFOLLOW` (a symlink anywhere on the way is refused, never followed)
//! and creating or replacing only the last name with `*at` calls. Files are
//! written under a temporary name (`O_EXCL`) and renamed into place, so a
//! half-written file is never seen and a symlink in the way is replaced,
//! not written through.
//!
//! This is the synced workspace's own copy of the host-side checks that
//! issue 23 (`host/src/untrusted/`) builds for every message from the
//! agent; once that module lands, these functions become calls into it.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use hutch_proto::tree::SNAPSHOT_MODE_BITS;
use hutch_proto::v1::ManifestEntry;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, UtimensatFlags, fchmod, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, symlinkat, unlinkat};

/// Longest path or link target taken from the guest (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest name of one component (Linux's NAME_MAX).
const MAX_NAME_BYTES: usize = 255;
/// Untrusted text shown in a message is cut here.
const SHOWN_BYTES: usize = 200;

/// Why the host refused something the guest sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The path is not a plain relative path.
    #[error("not a plain relative path ({0})")]
    BadPath(&'static str),
    /// The path is inside `.git`, which the guest never writes on the host.
    #[error("inside .git, which the guest never writes on the host")]
    Git,
    /// The walk rules leave the path out (ignored, or a heavy dir).
    #[error("excluded from the sync (ignored, or a heavy dir)")]
    Excluded,
    /// A folder on the way is a symlink or not a folder on the host.
    #[error("passes through a symlink or a non-folder on the host")]
    ThroughSymlink,
    /// The file is larger than the host takes.
    #[error("{size} bytes: larger than the {max} bytes a synced file may have")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A symlink whose target leads out of the project.
    #[error("a symlink to {0}, outside the project")]
    LinkEscapes(String),
    /// The entry is of a kind the sync does not carry.
    #[error("not a file, folder or symlink")]
    Kind,
}

/// The components of a path the guest named, or why it is refused:
/// relative, at most [`MAX_PATH_BYTES`], no empty, `.` or `..` component,
/// no NUL or control character, no `.git` component.
pub fn check_path(path: &[u8]) -> Result<Vec<&[u8]>, Refusal> {
    if path.is_empty() {
        return Err(Refusal::BadPath("empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(Refusal::BadPath("too long"));
    }
    if path[0] == b'/' {
        return Err(Refusal::BadPath("absolute"));
    }
    if path.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err(Refusal::BadPath("a control character"));
    }
    let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    for part in &parts {
        match *part {
            b"" | b"." => return Err(Refusal::BadPath("an empty or `.` component")),
            b".." => return Err(Refusal::BadPath("a `..` component")),
            b".git" => return Err(Refusal::Git),
            _ if part.len() > MAX_NAME_BYTES => return Err(Refusal::BadPath("a name over 255 bytes")),
            _ => {}
        }
    }
    Ok(parts)
}

/// Whether a symlink at `path` (checked) with `target` stays inside the
/// project at `root`: a relative target may climb with leading `..` no
/// higher than the root and then only descend; an absolute one must lie
/// below the root and then only descend. (A `..` after a name could climb
/// out through a symlink of that name, so none is allowed.)
pub fn check_link(root: &Path, path: &[u8], target: &[u8]) -> Result<(), Refusal> {
    let escapes = || Refusal::LinkEscapes(shown(target));
    if target.is_empty() || target.len() > MAX_PATH_BYTES || target.contains(&0) {
        return Err(escapes());
    }
    let rest: &[u8] = if target[0] == b'/' {
        let root = root.as_os_str().as_bytes();
        match target.strip_prefix(root) {
            Some([]) => &[],
            Some([b'/', rest @ ..]) => rest,
            _ => return Err(escapes()),
        }
    } else {
        let depth = path.iter().filter(|b| **b == b'/').count();
        let mut rest = target;
        let mut climbed = 0;
        while let Some(after) = rest.strip_prefix(b"..").filter(|r| r.is_empty() || r[0] == b'/') {
            climbed += 1;
            rest = after.strip_prefix(b"/").unwrap_or(after);
        }
        if climbed > depth {
            return Err(escapes());
        }
        rest
    };
    if rest.split(|b| *b == b'/').any(|c| c == b"..") {
        return Err(escapes());
    }
    Ok(())
}

/// Untrusted bytes as one short printable line: control characters
/// escaped, cut at [`SHOWN_BYTES`].
pub fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN_BYTES)]);
    let mut out: String =
        text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
    if bytes.len() > SHOWN_BYTES {
        out.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    out
}

/// The project root, opened once; every operation is relative to it.
pub struct Beneath {
    root: OwnedFd,
    path: PathBuf,
}

/// A failed operation: refused, or the OS said no.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    /// The operation is refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The OS failed.
    #[error("{0}")]
    Os(#[from] Errno),
}

impl Beneath {
    /// Opens the project root (absolute, canonical).
    pub fn open(root: &Path) -> Result<Beneath, Errno> {
        let root_fd = nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(Beneath { root: root_fd, path: root.to_path_buf() })
    }

    /// The project root's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the folder holding the last of `parts`, one name at a time
    /// without following symlinks; missing folders are created (0755) when
    /// `create` is set. `Ok(None)`: a folder is missing.
    pub fn parent(&self, parts: &[&[u8]], create: bool) -> Result<Option<OwnedFd>, BeneathError> {
        let mut fd = self.root.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        for name in &parts[..parts.len().saturating_sub(1)] {
            let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
            fd = match openat(&fd, *name, flags, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(&fd, *name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(&fd, *name, flags, Mode::empty()).map_err(refuse_links)?
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(refuse_links(e)),
            };
        }
        Ok(Some(fd))
    }

    /// What is at `path` now (not following symlinks); `None` when missing.
    pub fn stat(&self, path: &[u8]) -> Result<Option<ManifestEntry>, BeneathError> {
        let parts = check_path(path)?;
        let Some(parent) = self.parent(&parts, false)? else { return Ok(None) };
        Ok(hutch_proto::tree::stat_at(&parent, parts[parts.len() - 1], path.to_vec())?)
    }

    /// Starts writing a file at `path` (its folders created as needed): a
    /// temporary file beside it, renamed into place by [`NewFile::commit`].
    pub fn create(&self, path: &[u8]) -> Result<NewFile, BeneathError> {
        let parts = check_path(path)?;
        let parent = self.parent(&parts, true)?.ok_or(Errno::ENOENT)?;
        let name = parts[parts.len() - 1].to_vec();
        for attempt in 0..64u32 {
            let temp = format!(".hutch-sync-{}-{attempt}.tmp", std::process::id()).into_bytes();
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match openat(&parent, temp.as_slice(), flags, Mode::from_bits_truncate(0o600)) {
                Ok(fd) => return Ok(NewFile { parent, temp, name, file: Some(std::fs::File::from(fd)), written: 0 }),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Errno::EEXIST.into())
    }

    /// Makes a folder at `path` with `mode` (or gives an existing one that mode).
    pub fn make_dir(&self, path: &[u8], mode: u32) -> Result<(), BeneathError> {
        let parts = check_path(path)?;
        let parent = self.parent(&parts, true)?.ok_or(Errno::ENOENT)?;
        let name = parts[parts.len() - 1];
        match mkdirat(&parent, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let dir = openat(&parent, name, flags, Mode::empty()).map_err(refuse_links)?;
        fchmod(&dir, Mode::from_bits_truncate(mode & SNAPSHOT_MODE_BITS))?;
        Ok(())
    }

    /// Makes (or replaces) a symlink at `path` to `target` (checked).
    pub fn make_link(&self, path: &[u8], target: &[u8], mtime_ns: i64) -> Result<(), BeneathError> {
        let parts = check_path(path)?;
        check_link(&self.path, path, target)?;
        let parent = self.parent(&parts, true)?.ok_or(Errno::ENOENT)?;
        let name = parts[parts.len() - 1];
        let temp = format!(".hutch-sync-{}-link.tmp", std::process::id()).into_bytes();
        let _ = unlinkat(&parent, temp.as_slice(), UnlinkatFlags::NoRemoveDir);
        symlinkat(target, &parent, temp.as_slice())?;
        if let Err(e) = refuse_folder(&parent, name).and_then(|()| renameat(&parent, temp.as_slice(), &parent, name)) {
            let _ = unlinkat(&parent, temp.as_slice(), UnlinkatFlags::NoRemoveDir);
            return Err(e.into());
        }
        let _ = utimensat(&parent, name, &TimeSpec::UTIME_OMIT, &timespec(mtime_ns), UtimensatFlags::NoFollowSymlink);
        Ok(())
    }

    /// Removes the file or symlink at `path`, or the folder if it is empty;
    /// `Ok(false)`: a folder that is not empty (left as it is).
    pub fn remove(&self, path: &[u8]) -> Result<bool, BeneathError> {
        let parts = check_path(path)?;
        let Some(parent) = self.parent(&parts, false)? else { return Ok(true) };
        let name = parts[parts.len() - 1];
        let is_dir = hutch_proto::tree::stat_at(&parent, name, Vec::new())?
            .is_some_and(|e| e.kind == hutch_proto::v1::EntryKind::EntryDirectory as i32);
        let how = if is_dir { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
        match unlinkat(&parent, name, how) {
            Ok(()) | Err(Errno::ENOENT) => Ok(true),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A file being written from the guest's data.
pub struct NewFile {
    parent: OwnedFd,
    temp: Vec<u8>,
    name: Vec<u8>,
    file: Option<std::fs::File>,
    written: u64,
}

impl NewFile {
    /// Appends data.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if let Some(file) = &mut self.file {
            file.write_all(data)?;
            self.written += data.len() as u64;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Gives the file its mode and mtime and renames it into place, unless
    /// `still` says the path no longer holds what it held when the write
    /// began (the host changed it meanwhile): then the file comes back,
    /// for [`NewFile::rename_to`] another name.
    pub fn commit(
        mut self,
        mode: u32,
        mtime_ns: i64,
        still: impl FnOnce(BorrowedFd<'_>, &[u8]) -> bool,
    ) -> Result<Option<NewFile>, BeneathError> {
        let Some(file) = self.file.take() else { return Err(Errno::EBADF.into()) };
        fchmod(file.as_fd(), Mode::from_bits_truncate(mode & SNAPSHOT_MODE_BITS))?;
        futimens(file.as_fd(), &TimeSpec::UTIME_OMIT, &timespec(mtime_ns))?;
        drop(file);
        if !still(self.parent.as_fd(), &self.name) {
            return Ok(Some(self));
        }
        let name = std::mem::take(&mut self.name);
        self.rename_to(&name)?;
        Ok(None)
    }

    /// Renames the finished file to `name` in the same folder (a name that
    /// is free, checked; never over a folder).
    pub fn rename_to(mut self, name: &[u8]) -> Result<(), BeneathError> {
        check_path(name)?;
        refuse_folder(&self.parent, name)?;
        renameat(&self.parent, self.temp.as_slice(), &self.parent, name)?;
        self.temp.clear();
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.temp.is_empty() {
            let _ = unlinkat(&self.parent, self.temp.as_slice(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// A rename over `name` must not replace a folder (rename(2) would, if empty).
fn refuse_folder(parent: &OwnedFd, name: &[u8]) -> Result<(), Errno> {
    match hutch_proto::tree::stat_at(parent, name, Vec::new())? {
        Some(e) if e.kind == hutch_proto::v1::EntryKind::EntryDirectory as i32 => Err(Errno::EISDIR),
        _ => Ok(()),
    }
}

/// `O_NOFOLLOW | O_DIRECTORY` on a symlink or a file fails with ELOOP or
/// ENOTDIR: the path passes through something that is not a folder.
fn refuse_links(e: Errno) -> BeneathError {
    match e {
        Errno::ELOOP | Errno::ENOTDIR => Refusal::ThroughSymlink.into(),
        e => e.into(),
    }
}

fn timespec(ns: i64) -> TimeSpec {
    TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_plain_and_never_git() {
        assert_eq!(check_path(b"src/main.rs").unwrap(), vec![&b"src"[..], b"main.rs"]);
        for bad in
            [&b""[..], b"/etc/passwd", b"a/../b", b"..", b"./a", b"a//b", b"a/", b"a\nb", b"a\x1b[31m", b"x/.git/hooks/pre-commit", b".git"]
        {
            assert!(check_path(bad).is_err(), "{}", shown(bad));
        }
        assert_eq!(check_path(b"sub/.git/config"), Err(Refusal::Git));
        assert!(check_path(&[b'a'; 4097]).is_err());
    }

    #[test]
    fn links_stay_inside_the_project() {
        let root = Path::new("/home/me/p");
        for ok in [&b"b"[..], b"../b", b"sub/x", b"/home/me/p/x", b"/home/me/p"] {
            assert!(check_link(root, b"dir/a", ok).is_ok(), "{}", shown(ok));
        }
        for bad in [&b"../../b"[..], b"/etc/passwd", b"/home/me/pother", b"x/../../..", b"sub/../..", b"", b"/home/me/p/../q"] {
            assert!(check_link(root, b"dir/a", bad).is_err(), "{}", shown(bad));
        }
        assert!(check_link(root, b"a", b"../b").is_err());
    }

    #[test]
    fn nothing_is_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("p"), dir.path().join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("esc")).unwrap();
        let beneath = Beneath::open(&root).unwrap();
        assert!(matches!(beneath.create(b"esc/x"), Err(BeneathError::Refused(Refusal::ThroughSymlink))));
        assert!(matches!(beneath.make_dir(b"esc/d", 0o755), Err(BeneathError::Refused(Refusal::ThroughSymlink))));
        assert!(matches!(beneath.remove(b"esc/y"), Err(BeneathError::Refused(Refusal::ThroughSymlink))));
        // The link itself is replaced, not written through.
        let mut file = beneath.create(b"esc").unwrap();
        file.write(b"data").unwrap();
        assert!(file.commit(0o644, 0, |_, _| true).unwrap().is_none());
        assert_eq!(std::fs::read(root.join("esc")).unwrap(), b"data");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
