//! `hutch diff`: the guest's changes to a `--ro` snapshot, as a git-style
//! patch or applied to the host's files (`--apply`).
//!
//! Semantics: the agent reports every file and symlink that differs from
//! what it last received (added, modified, deleted) with its current
//! contents; the "before" side is the host's own file at that path. That
//! is exactly the last-synced version unless the host changed the file
//! since, in which case a warning names it and the patch is relative to
//! the host's current file (so it still applies to the host tree as it is;
//! `--apply` leaves such a path alone). Text changes become unified hunks;
//! binary ones are noted (`Binary files a/x and b/x differ`) and must be
//! copied by hand, or with `--apply`.
//!
//! Everything the agent sends is checked before it is used (see
//! `crate::untrusted`): each path is a [`GuestPath`] (no `..`, no absolute
//! path, no newline that would forge a `+++` line), paths come in order,
//! once each; the host side is read below the workspace one name at a time
//! ([`Beneath`]), never through a symlink; a path inside `.git` is never in
//! the patch (git refuses to apply one: hooks and configuration run code);
//! names are quoted as git quotes them ([`super::quote`]). Changes are
//! handled one at a time as they arrive: at most one file's contents (up to
//! [`limits::DIFF_FILE_BYTES`], each side) are held, and the agent may stay
//! silent for at most the call deadline between two messages.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use hutch_proto::tree::SNAPSHOT_MODE_BITS;
use hutch_proto::v1::snapshot_diff_response::Kind;
use hutch_proto::v1::{ChangedEntry, EntryKind, ManifestEntry, SnapshotDiffRequest};
use similar::TextDiff;

use super::{SyncError, quote};
use crate::transport::Client;
use crate::untrusted::beneath::{Kind as HostKind, Stat};
use crate::untrusted::protocol::known;
use crate::untrusted::{Beneath, BeneathError, GuestPath, ProtocolError, limits};

/// One side of a change: what a path holds.
#[derive(Debug, PartialEq)]
pub enum Side {
    /// A regular file with this mode.
    File(u32, Contents),
    /// A symlink to this target.
    Link(Vec<u8>),
}

/// A file's contents, when small enough to hold.
#[derive(Debug, PartialEq)]
pub enum Contents {
    /// All of it.
    Held(Vec<u8>),
    /// More than [`limits::DIFF_FILE_BYTES`]: not held.
    TooLarge,
}

/// One changed path, checked, with both sides.
#[derive(Debug)]
pub struct Change {
    /// The path, relative to the workspace.
    pub path: GuestPath,
    /// The host's version now (`None`: the host has nothing there).
    pub before: Option<Side>,
    /// The guest's version (`None`: the guest deleted it).
    pub after: Option<Side>,
    /// The host's version is no longer what was last synced.
    pub host_changed: bool,
}

/// What a diff found.
#[derive(Debug, Default)]
pub struct Tally {
    /// Changed paths the agent reported.
    pub changes: usize,
    /// Paths left out, each with why (already said on stderr).
    pub skipped: usize,
}

/// Asks the agent for the guest's changes under `root` and hands each to
/// `each` once its contents are complete. A path hutch will not touch (in
/// `.git`, through a symlink of the project) is reported to `warn` and
/// skipped; anything the protocol does not allow ends the diff.
pub async fn changes(
    client: &mut Client,
    root: &Path,
    warn: &mut (dyn FnMut(String) + Send),
    each: &mut (dyn FnMut(Change) -> Result<(), SyncError> + Send),
) -> Result<Tally, SyncError> {
    let host =
        Beneath::open(root).map_err(|e| SyncError::Local { what: "opening the workspace".into(), source: std::io::Error::other(e) })?;
    let request = SnapshotDiffRequest { root: root.to_string_lossy().into_owned() };
    let deadline = client.deadline();
    let mut stream = deadline.within("SnapshotDiff", client.snapshot_diff(request)).await?.map_err(SyncError::from_status)?.into_inner();
    let mut tally = Tally::default();
    let mut pending: Option<Pending> = None;
    let mut last: Option<GuestPath> = None;
    loop {
        let message = deadline.within("SnapshotDiff", stream.message()).await?.map_err(SyncError::from_status)?;
        let Some(message) = message else { break };
        match message.kind {
            Some(Kind::Entry(entry)) => {
                if let Some(done) = pending.take() {
                    done.finish(&host, &mut tally, warn, each)?;
                }
                let next = Pending::new(entry)?;
                if last.as_ref().is_some_and(|last| *last >= next.path) {
                    return Err(ProtocolError::Unexpected("sent the changed paths out of order or twice").into());
                }
                last = Some(next.path.clone());
                tally.changes += 1;
                limits::DIFF_ENTRIES.check_len(tally.changes).map_err(ProtocolError::from)?;
                pending = Some(next);
            }
            Some(Kind::Data(data)) => match &mut pending {
                Some(file) if file.takes_data() => file.add(&data),
                _ => return Err(ProtocolError::Unexpected("sent file contents that belong to no changed file").into()),
            },
            None => {}
        }
    }
    if let Some(done) = pending.take() {
        done.finish(&host, &mut tally, warn, each)?;
    }
    Ok(tally)
}

/// A change whose contents are still arriving.
struct Pending {
    path: GuestPath,
    synced: Option<ManifestEntry>,
    current: Option<ManifestEntry>,
    data: Vec<u8>,
    too_large: bool,
}

impl Pending {
    fn new(entry: ChangedEntry) -> Result<Pending, ProtocolError> {
        let path = GuestPath::from_bytes(&entry.path).map_err(|why| ProtocolError::path(&entry.path, why))?;
        for side in [&entry.synced, &entry.current].into_iter().flatten() {
            match known::<EntryKind>("a changed entry's kind", side.kind)? {
                EntryKind::EntryFile | EntryKind::EntrySymlink => {}
                _ => return Err(ProtocolError::Unexpected("reported a change to something that is neither a file nor a symlink")),
            }
            limits::PATH_BYTES.check_len(side.link_target.len())?;
        }
        if entry.synced.is_none() && entry.current.is_none() {
            return Err(ProtocolError::Unexpected("reported a change with neither side"));
        }
        Ok(Pending { path, synced: entry.synced, current: entry.current, data: Vec::new(), too_large: false })
    }

    fn takes_data(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.kind == EntryKind::EntryFile as i32)
    }

    fn add(&mut self, data: &[u8]) {
        if self.too_large || self.data.len() + data.len() > limits::DIFF_FILE_BYTES.max_usize() {
            self.too_large = true;
            self.data = Vec::new();
        } else {
            self.data.extend_from_slice(data);
        }
    }

    /// Reads the host's side and hands the change on (or skips it, saying why).
    fn finish(
        self,
        host: &Beneath,
        tally: &mut Tally,
        warn: &mut (dyn FnMut(String) + Send),
        each: &mut (dyn FnMut(Change) -> Result<(), SyncError> + Send),
    ) -> Result<(), SyncError> {
        let path = self.path;
        if path.is_in_git_dir() {
            warn(format!("{path}: the guest changed a file inside .git; hutch never patches .git (its hooks and configuration run code)"));
            tally.skipped += 1;
            return Ok(());
        }
        let (before, now) = match host_side(host, &path) {
            Ok(found) => found,
            Err(e @ (BeneathError::Symlink { .. } | BeneathError::NotAFolder { .. } | BeneathError::Kind { .. })) => {
                warn(format!("{e}; left out"));
                tally.skipped += 1;
                return Ok(());
            }
            Err(e) => return Err(SyncError::Local { what: "reading the workspace".into(), source: std::io::Error::other(e) }),
        };
        let host_changed = match (&self.synced, &now) {
            (Some(synced), Some(now)) => !hutch_proto::tree::unchanged(synced, now),
            (None, None) => false,
            _ => true,
        };
        let after = self.current.as_ref().map(|current| match EntryKind::try_from(current.kind) {
            Ok(EntryKind::EntrySymlink) => Side::Link(current.link_target.clone()),
            _ => Side::File(current.mode, if self.too_large { Contents::TooLarge } else { Contents::Held(self.data) }),
        });
        each(Change { path, before, after, host_changed })
    }
}

/// The host's version of `path` and its manifest entry (to compare with
/// what was synced): a regular file (held up to the cap), a symlink, or
/// nothing; anything else there is left alone.
/// The host's version of `path`, read below the workspace (never through a
/// symlink), and its manifest entry; `None` when the host has nothing there.
pub fn host_side(host: &Beneath, path: &GuestPath) -> Result<(Option<Side>, Option<ManifestEntry>), BeneathError> {
    let Some(stat) = host.stat(path)? else { return Ok((None, None)) };
    match stat.kind {
        HostKind::File => {
            let contents = match host.read_file(path, limits::DIFF_FILE_BYTES) {
                Ok(Some(data)) => Contents::Held(data),
                Ok(None) => return Ok((None, None)),
                Err(BeneathError::TooLarge { .. }) => Contents::TooLarge,
                Err(e) => return Err(e),
            };
            Ok((Some(Side::File(stat.mode, contents)), Some(entry(path, &stat, Vec::new()))))
        }
        HostKind::Symlink => {
            let target = host.read_link(path)?.unwrap_or_default();
            Ok((Some(Side::Link(target.clone())), Some(entry(path, &stat, target))))
        }
        HostKind::Dir | HostKind::Other => {
            Err(BeneathError::Kind { path: path.shown(), found: "a folder or special file on the host", wanted: "a file or symlink" })
        }
    }
}

/// `stat` as a manifest entry, as the host's walk would make it.
fn entry(path: &GuestPath, stat: &Stat, link_target: Vec<u8>) -> ManifestEntry {
    let (kind, size, mode) = match stat.kind {
        HostKind::Symlink => (EntryKind::EntrySymlink, 0, 0),
        _ => (EntryKind::EntryFile, stat.size, stat.mode & SNAPSHOT_MODE_BITS),
    };
    ManifestEntry { path: path.as_bytes().to_vec(), kind: kind as i32, size, mtime_ns: stat.mtime_ns, mode, link_target }
}

impl Side {
    fn git_mode(&self) -> &'static str {
        match self {
            Side::File(mode, _) if mode & 0o111 != 0 => "100755",
            Side::File(..) => "100644",
            Side::Link(_) => "120000",
        }
    }

    /// The bytes a patch compares; `None` for a file too large to hold.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Side::File(_, Contents::Held(data)) | Side::Link(data) => Some(data),
            Side::File(_, Contents::TooLarge) => None,
        }
    }
}

/// Writes the git-style patch of `change` to `out`, with warnings for what
/// the user should know about it.
pub fn render(change: &Change, out: &mut dyn Write, warn: &mut dyn FnMut(String)) -> std::io::Result<()> {
    if change.host_changed {
        warn(format!("{} changed on the host since the last sync; the patch is against the host's current version", change.path));
    }
    for side in [&change.before, &change.after].into_iter().flatten() {
        if matches!(side, Side::File(_, Contents::TooLarge)) {
            warn(format!(
                "{} is larger than {}: not diffed, copy it by hand (or `hutch diff --apply`)",
                change.path,
                limits::DIFF_FILE_BYTES.shown()
            ));
            break;
        }
    }
    let mut text = String::new();
    patch(&mut text, &change.path, change.before.as_ref(), change.after.as_ref());
    out.write_all(text.as_bytes())
}

/// Appends the git-style diff of one path.
fn patch(out: &mut String, path: &GuestPath, before: Option<&Side>, after: Option<&Side>) {
    let (a, b) = (quote::name("a/", path), quote::name("b/", path));
    match (before, after) {
        (None, None) => {}
        (Some(x), Some(y)) if std::mem::discriminant(x) != std::mem::discriminant(y) => {
            patch(out, path, Some(x), None);
            patch(out, path, None, Some(y));
        }
        (None, Some(y)) => {
            let _ = write!(out, "diff --git {a} {b}\nnew file mode {}\n", y.git_mode());
            body(out, &a, &b, None, Some(y));
        }
        (Some(x), None) => {
            let _ = write!(out, "diff --git {a} {b}\ndeleted file mode {}\n", x.git_mode());
            body(out, &a, &b, Some(x), None);
        }
        (Some(x), Some(y)) => {
            if x == y {
                return;
            }
            let _ = writeln!(out, "diff --git {a} {b}");
            if x.git_mode() != y.git_mode() {
                let _ = write!(out, "old mode {}\nnew mode {}\n", x.git_mode(), y.git_mode());
            }
            if x.bytes() != y.bytes() || x.bytes().is_none() {
                body(out, &a, &b, Some(x), Some(y));
            }
        }
    }
}

/// The `---`/`+++` lines and hunks (or the binary note) between two sides.
fn body(out: &mut String, a: &str, b: &str, before: Option<&Side>, after: Option<&Side>) {
    let old_name = if before.is_some() { a } else { "/dev/null" };
    let new_name = if after.is_some() { b } else { "/dev/null" };
    let (old, new) = (before.map_or(Some(&[][..]), Side::bytes), after.map_or(Some(&[][..]), Side::bytes));
    if old.is_some_and(<[u8]>::is_empty) && new.is_some_and(<[u8]>::is_empty) {
        return;
    }
    let (Some(old_text), Some(new_text)) = (old.and_then(text), new.and_then(text)) else {
        let _ = writeln!(out, "Binary files {old_name} and {new_name} differ");
        return;
    };
    let _ = write!(out, "--- {old_name}\n+++ {new_name}\n");
    let diff = TextDiff::configure().timeout(limits::DIFF_TIME).diff_lines(old_text, new_text);
    let mut unified = diff.unified_diff();
    unified.context_radius(3).missing_newline_hint(true);
    for hunk in unified.iter_hunks() {
        let _ = write!(out, "{hunk}");
    }
}

/// The contents as text, or `None` for binary data (a NUL byte near the start, or not UTF-8).
fn text(data: &[u8]) -> Option<&str> {
    if data[..data.len().min(8000)].contains(&0) {
        return None;
    }
    std::str::from_utf8(data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(mode: u32, data: &[u8]) -> Side {
        Side::File(mode, Contents::Held(data.to_vec()))
    }

    fn p(path: &str) -> GuestPath {
        GuestPath::from_bytes(path.as_bytes()).unwrap()
    }

    #[test]
    fn renders_git_style() {
        let mut out = String::new();
        patch(&mut out, &p("a.txt"), Some(&held(0o644, b"one\ntwo\n")), Some(&held(0o755, b"one\n2\n")));
        assert!(out.starts_with("diff --git a/a.txt b/a.txt\nold mode 100644\nnew mode 100755\n--- a/a.txt\n+++ b/a.txt\n@@ "), "{out}");
        assert!(out.contains("-two\n+2\n"), "{out}");

        let mut out = String::new();
        patch(&mut out, &p("bin"), None, Some(&held(0o644, &[0, 1, 2])));
        assert_eq!(out, "diff --git a/bin b/bin\nnew file mode 100644\nBinary files /dev/null and b/bin differ\n");

        let mut out = String::new();
        patch(&mut out, &p("caf\u{e9}"), None, Some(&held(0o644, b"x\n")));
        assert!(out.starts_with("diff --git \"a/caf\\303\\251\" \"b/caf\\303\\251\"\n"), "{out}");
        assert!(out.contains("+++ \"b/caf\\303\\251\"\n"), "{out}");

        let mut out = String::new();
        patch(&mut out, &p("big"), Some(&held(0o644, b"x\n")), Some(&Side::File(0o644, Contents::TooLarge)));
        assert!(out.ends_with("Binary files a/big and b/big differ\n"), "{out}");
    }
}
