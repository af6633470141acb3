//! `hutch diff`: the guest's changes to a `--ro` snapshot as a git-style patch.
//!
//! Semantics: the agent reports every file and symlink that differs from what
//! it last received (added, modified, deleted) with its current contents; the
//! "before" side is the host's own file at that path. That is exactly the
//! last-synced version unless the host changed the file since, in which case
//! a warning names it and the patch is relative to the host's current file
//! (so it still applies to the host tree as it is). Text changes become
//! unified hunks; binary ones are noted (`Binary files a/x and b/x differ`)
//! and must be copied by hand.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use hutch_proto::v1::snapshot_diff_response::Kind;
use hutch_proto::v1::{ChangedEntry, EntryKind, ManifestEntry, SnapshotDiffRequest};
use similar::TextDiff;

use super::SyncError;
use crate::transport::Client;

/// A patch and what the user should know about it.
#[derive(Debug, Default)]
pub struct Patch {
    /// The unified diff (empty when nothing changed).
    pub text: String,
    /// Paths whose host version changed since the last sync.
    pub warnings: Vec<String>,
    /// Number of changed paths.
    pub files: usize,
}

/// One side of a change: what a path holds.
#[derive(Debug, PartialEq)]
pub enum Side {
    /// A regular file with this mode.
    File(u32, Vec<u8>),
    /// A symlink to this target.
    Link(Vec<u8>),
}

impl Side {
    fn git_mode(&self) -> &'static str {
        match self {
            Side::File(mode, _) if mode & 0o111 != 0 => "100755",
            Side::File(..) => "100644",
            Side::Link(_) => "120000",
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Side::File(_, data) | Side::Link(data) => data,
        }
    }
}

/// Asks the agent for the guest's changes under `root` and makes the patch.
pub async fn diff(client: &mut Client, root: &Path) -> Result<Patch, SyncError> {
    let request = SnapshotDiffRequest { root: root.to_string_lossy().into_owned() };
    let mut stream = client.snapshot_diff(request).await.map_err(SyncError::from_status)?.into_inner();
    let mut changes: Vec<(ChangedEntry, Vec<u8>)> = Vec::new();
    while let Some(message) = stream.message().await.map_err(SyncError::from_status)? {
        match message.kind {
            Some(Kind::Entry(entry)) => changes.push((entry, Vec::new())),
            Some(Kind::Data(data)) => match changes.last_mut() {
                Some((_, contents)) => contents.extend_from_slice(&data),
                None => return Err(SyncError::Protocol("file data before any entry".into())),
            },
            None => {}
        }
    }
    let mut patch = Patch { files: changes.len(), ..Patch::default() };
    for (entry, contents) in changes {
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        let before = host_side(root, &entry, &path, &mut patch.warnings)?;
        let after = entry.current.as_ref().and_then(|c| guest_side(c, contents));
        render(&mut patch.text, &path, before.as_ref(), after.as_ref());
    }
    Ok(patch)
}

/// The host's version of a changed path, warning when it is no longer what was synced.
fn host_side(root: &Path, entry: &ChangedEntry, path: &str, warnings: &mut Vec<String>) -> Result<Option<Side>, SyncError> {
    let full = root.join(std::ffi::OsStr::from_bytes(&entry.path));
    let local = |e: std::io::Error| SyncError::Local { what: format!("reading {}", full.display()), source: e };
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(local(e)),
    };
    let now = meta.as_ref().and_then(|m| {
        let target = if m.file_type().is_symlink() { std::fs::read_link(&full).ok()?.as_os_str().as_bytes().to_vec() } else { Vec::new() };
        hutch_proto::tree::entry(entry.path.clone(), m, target)
    });
    let matches = match (&entry.synced, &now) {
        (Some(synced), Some(now)) => hutch_proto::tree::unchanged(synced, now),
        (None, None) => true,
        _ => false,
    };
    if !matches {
        warnings.push(format!("{path} changed on the host since the last sync; the patch is against the host's current version"));
    }
    Ok(match now {
        Some(e) if e.kind == EntryKind::EntryFile as i32 => Some(Side::File(e.mode, std::fs::read(&full).map_err(local)?)),
        Some(e) if e.kind == EntryKind::EntrySymlink as i32 => Some(Side::Link(e.link_target)),
        _ => None,
    })
}

fn guest_side(current: &ManifestEntry, contents: Vec<u8>) -> Option<Side> {
    match EntryKind::try_from(current.kind) {
        Ok(EntryKind::EntryFile) => Some(Side::File(current.mode, contents)),
        Ok(EntryKind::EntrySymlink) => Some(Side::Link(current.link_target.clone())),
        _ => None,
    }
}

/// Appends the git-style diff of one path.
pub fn render(out: &mut String, path: &str, before: Option<&Side>, after: Option<&Side>) {
    match (before, after) {
        (None, None) => {}
        (Some(a), Some(b)) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            render(out, path, Some(a), None);
            render(out, path, None, Some(b));
        }
        (None, Some(b)) => {
            let _ = write!(out, "diff --git a/{path} b/{path}\nnew file mode {}\n", b.git_mode());
            body(out, path, None, Some(b.bytes()));
        }
        (Some(a), None) => {
            let _ = write!(out, "diff --git a/{path} b/{path}\ndeleted file mode {}\n", a.git_mode());
            body(out, path, Some(a.bytes()), None);
        }
        (Some(a), Some(b)) => {
            if a == b {
                return;
            }
            let _ = writeln!(out, "diff --git a/{path} b/{path}");
            if a.git_mode() != b.git_mode() {
                let _ = write!(out, "old mode {}\nnew mode {}\n", a.git_mode(), b.git_mode());
            }
            if a.bytes() != b.bytes() {
                body(out, path, Some(a.bytes()), Some(b.bytes()));
            }
        }
    }
}

/// The `---`/`+++` lines and hunks (or the binary note) between two contents.
fn body(out: &mut String, path: &str, before: Option<&[u8]>, after: Option<&[u8]>) {
    let (old_name, new_name) = (
        before.map_or_else(|| "/dev/null".to_owned(), |_| format!("a/{path}")),
        after.map_or_else(|| "/dev/null".to_owned(), |_| format!("b/{path}")),
    );
    let (old, new) = (before.unwrap_or_default(), after.unwrap_or_default());
    if old.is_empty() && new.is_empty() {
        return;
    }
    let (Some(old_text), Some(new_text)) = (text(old), text(new)) else {
        let _ = writeln!(out, "Binary files {old_name} and {new_name} differ");
        return;
    };
    let _ = write!(out, "--- {old_name}\n+++ {new_name}\n");
    let diff = TextDiff::from_lines(old_text, new_text);
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

    #[test]
    fn renders_git_style() {
        let mut out = String::new();
        render(&mut out, "a.txt", Some(&Side::File(0o644, b"one\ntwo\n".to_vec())), Some(&Side::File(0o755, b"one\n2\n".to_vec())));
        assert!(out.starts_with("diff --git a/a.txt b/a.txt\nold mode 100644\nnew mode 100755\n--- a/a.txt\n+++ b/a.txt\n@@ "), "{out}");
        assert!(out.contains("-two\n+2\n"), "{out}");

        let mut out = String::new();
        render(&mut out, "bin", None, Some(&Side::File(0o644, vec![0, 1, 2])));
        assert_eq!(out, "diff --git a/bin b/bin\nnew file mode 100644\nBinary files /dev/null and b/bin differ\n");
    }
}
