//! Paths from the guest, validated before the host uses them.
//!
//! The agent names files of the project: a `hutch diff` entry, a manifest
//! entry, a heavy dir it made into a symlink. Each is a [`GuestPath`]
//! before anything is joined, opened, removed or printed with it: relative,
//! made of plain names (no `.`, `..` or empty component, no leading `/`),
//! with no NUL or control character (a newline in a name is how a patch or
//! a log line is forged), at most [`limits::PATH_BYTES`] long with names of
//! at most [`limits::NAME_BYTES`]. Names need not be UTF-8, as on the
//! host's file system. A valid path can still pass through a symlink on the
//! host: [`super::beneath`] opens it one component at a time to refuse that.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::limits;
use super::text;

/// A relative path below a folder the host owns, as the guest named it and
/// the host checked it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPath(Vec<u8>);

/// Why a path from the guest was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing at all.
    #[error("an empty path")]
    Empty,
    /// Longer than any path of the host project can be.
    #[error("a path of {0} bytes (the limit is {max})", max = limits::PATH_BYTES.max)]
    TooLong(usize),
    /// One name longer than a file system allows.
    #[error("a file name of {0} bytes (the limit is {max})", max = limits::NAME_BYTES.max)]
    NameTooLong(usize),
    /// Starts at the root of the file system.
    #[error("an absolute path")]
    Absolute,
    /// A `..` component.
    #[error("a `..` component")]
    DotDot,
    /// A `.` component, or an empty one (`a//b`, a trailing `/`).
    #[error("a `.` or empty component")]
    Dot,
    /// A NUL byte or a control character (a newline, an escape sequence).
    #[error("a control character (byte {0:#04x})")]
    Control(u8),
    /// Outside the folder it must be in.
    #[error("a path outside {0}")]
    Outside(String),
}

impl GuestPath {
    /// Checks `bytes` as a relative guest path.
    pub fn new(bytes: Vec<u8>) -> Result<GuestPath, PathError> {
        check(&bytes)?;
        Ok(GuestPath(bytes))
    }

    /// [`GuestPath::new`] for a borrowed path.
    pub fn from_bytes(bytes: &[u8]) -> Result<GuestPath, PathError> {
        check(bytes)?;
        Ok(GuestPath(bytes.to_vec()))
    }

    /// `absolute`, which the guest named as a path inside `root` (both
    /// absolute host paths), as a path relative to `root`.
    pub fn below(root: &Path, absolute: &Path) -> Result<GuestPath, PathError> {
        let outside = || PathError::Outside(text::shown_bytes(root.as_os_str().as_bytes()));
        if !absolute.is_absolute() {
            return Err(PathError::Outside(text::shown_bytes(root.as_os_str().as_bytes())));
        }
        // Compared byte-wise, before any normalisation: `root/../x` is refused below.
        let rest = absolute.as_os_str().as_bytes().strip_prefix(root.as_os_str().as_bytes()).ok_or_else(outside)?;
        let rest = rest.strip_prefix(b"/").ok_or_else(outside)?;
        GuestPath::from_bytes(rest)
    }

    /// The path's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as a relative host path.
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// Its names, first to last.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|b| *b == b'/')
    }

    /// Its last name.
    pub fn file_name(&self) -> &[u8] {
        self.0.rsplit(|b| *b == b'/').next().unwrap_or(&self.0)
    }

    /// Whether one of its names is `.git` as git itself sees it: in any
    /// case, and ignoring the characters macOS's file systems ignore in
    /// names. git refuses to touch such paths from a patch (its own hooks
    /// and configuration run code), and so does hutch.
    pub fn is_in_git_dir(&self) -> bool {
        self.components().any(|name| {
            let name = String::from_utf8_lossy(name);
            let kept: String = name.chars().filter(|c| !is_hfs_ignorable(*c)).collect();
            kept.eq_ignore_ascii_case(".git")
        })
    }

    /// The path as it is shown in a message: escaped and cut.
    pub fn shown(&self) -> String {
        text::shown_bytes(&self.0)
    }
}

impl fmt::Display for GuestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for GuestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestPath({})", self.shown())
    }
}

impl TryFrom<Vec<u8>> for GuestPath {
    type Error = PathError;
    fn try_from(bytes: Vec<u8>) -> Result<Self, PathError> {
        GuestPath::new(bytes)
    }
}

/// A name is refused when it holds a NUL, a C0 control, DEL, or (in
/// UTF-8) a C1 control; other bytes, UTF-8 or not, are names as any.
fn check(bytes: &[u8]) -> Result<(), PathError> {
    limits::PATH_BYTES.check_len(bytes.len()).map_err(|_| PathError::TooLong(bytes.len()))?;
    if bytes.is_empty() {
        return Err(PathError::Empty);
    }
    if bytes[0] == b'/' {
        return Err(PathError::Absolute);
    }
    for (i, b) in bytes.iter().enumerate() {
        let c1 = *b == 0xc2 && bytes.get(i + 1).is_some_and(|next| (0x80..0xa0).contains(next));
        if *b < 0x20 || *b == 0x7f || c1 {
            return Err(PathError::Control(if c1 { bytes[i + 1] } else { *b }));
        }
    }
    for name in bytes.split(|b| *b == b'/') {
        match name {
            b".." => return Err(PathError::DotDot),
            b"." | b"" => return Err(PathError::Dot),
            _ => limits::NAME_BYTES.check_len(name.len()).map_err(|_| PathError::NameTooLong(name.len()))?,
        }
    }
    // Belt and braces: what the standard library sees must be plain names too.
    if Path::new(OsStr::from_bytes(bytes)).components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(PathError::Dot);
    }
    Ok(())
}

/// Characters HFS+ and APFS leave out when they compare names (git's
/// `is_hfs_dotgit` list): `.g\u{200c}it` is `.git` there.
fn is_hfs_ignorable(c: char) -> bool {
    matches!(c, '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_are_accepted() {
        for good in ["a", "src/main.rs", "a b/c", "caf\u{e9}", ".hidden/x", "..a", "a..", "x/.../y"] {
            assert!(GuestPath::from_bytes(good.as_bytes()).is_ok(), "{good}");
        }
        assert!(GuestPath::new(b"latin1-\xe9".to_vec()).is_ok(), "names need not be UTF-8");
        let path = GuestPath::from_bytes(b"a/b/c.txt").unwrap();
        assert_eq!(path.components().collect::<Vec<_>>(), [&b"a"[..], b"b", b"c.txt"]);
        assert_eq!(path.file_name(), b"c.txt");
    }

    #[test]
    fn everything_else_is_refused_with_the_reason() {
        let refused = |p: &[u8]| GuestPath::from_bytes(p).unwrap_err();
        assert_eq!(refused(b""), PathError::Empty);
        assert_eq!(refused(b"/etc/passwd"), PathError::Absolute);
        assert_eq!(refused(b"../x"), PathError::DotDot);
        assert_eq!(refused(b"a/../../x"), PathError::DotDot);
        assert_eq!(refused(b"a//b"), PathError::Dot);
        assert_eq!(refused(b"a/./b"), PathError::Dot);
        assert_eq!(refused(b"a/"), PathError::Dot);
        assert_eq!(refused(b"x\n+++ b/evil"), PathError::Control(b'\n'));
        assert_eq!(refused(b"x\0y"), PathError::Control(0));
        assert_eq!(refused("x\u{9b}y".as_bytes()), PathError::Control(0x9b));
        assert_eq!(refused(b"a\x7f"), PathError::Control(0x7f));
        assert_eq!(refused(&[b'a'; 4097]), PathError::TooLong(4097));
        assert_eq!(refused(&[b'a'; 256]), PathError::NameTooLong(256));
    }

    #[test]
    fn paths_below_a_root_must_be_inside_it() {
        let root = Path::new("/home/me/app");
        assert_eq!(GuestPath::below(root, Path::new("/home/me/app/node_modules")).unwrap().as_bytes(), b"node_modules");
        for bad in ["/home/me/app", "/home/me/apple/x", "/home/me/app/../other", "/etc/passwd", "relative"] {
            assert!(GuestPath::below(root, Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn git_dirs_are_recognised_as_git_does() {
        for git in [".git/config", "sub/.GIT/hooks/x", ".g\u{200c}it/HEAD"] {
            assert!(GuestPath::from_bytes(git.as_bytes()).unwrap().is_in_git_dir(), "{git}");
        }
        for not in [".gitignore", "a/.github/x", "git"] {
            assert!(!GuestPath::from_bytes(not.as_bytes()).unwrap().is_in_git_dir(), "{not}");
        }
    }
}
