//! What a Sync must change: the host's walk against the guest's manifest.
//!
//! rsync's quick check: an entry whose kind, size, mtime and mode (or symlink
//! target) match is left alone, and its contents are never read. Everything
//! else is sent; what the guest has and the host has not is deleted. A path
//! whose kind changed (a folder became a file) is deleted first, then sent.

use hutch_proto::tree::unchanged;
use hutch_proto::v1::{EntryKind, ManifestEntry};

/// The changes that make the guest's snapshot equal the host's tree.
#[derive(Debug, Default)]
pub struct Plan {
    /// Paths to remove in the guest, sorted; none lies inside another.
    pub deletes: Vec<Vec<u8>>,
    /// Host entries to send, sorted by path (parents first).
    pub sends: Vec<ManifestEntry>,
    /// Bytes of file contents among `sends`.
    pub bytes: u64,
}

impl Plan {
    /// Whether the guest is already up to date.
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.sends.is_empty()
    }
}

/// Compares the host's entries (sorted by path) with the guest's manifest
/// (in any order), as one merge of two sorted lists.
pub fn compare(host: &[ManifestEntry], mut guest: Vec<ManifestEntry>) -> Plan {
    // The agent sends its walk sorted, which this sort merely confirms.
    guest.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let mut plan = Plan::default();
    let mut theirs = guest.into_iter().peekable();
    for entry in host {
        while let Some(extra) = theirs.next_if(|g| g.path < entry.path) {
            plan.deletes.push(extra.path);
        }
        match theirs.next_if(|g| g.path == entry.path) {
            Some(theirs) if unchanged(entry, &theirs) => continue,
            Some(theirs) if theirs.kind != entry.kind => plan.deletes.push(theirs.path),
            _ => {}
        }
        if entry.kind == EntryKind::EntryFile as i32 {
            plan.bytes += entry.size;
        }
        plan.sends.push(entry.clone());
    }
    plan.deletes.extend(theirs.map(|e| e.path));
    plan.deletes.sort_unstable();
    // A folder's removal takes what is inside it.
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(plan.deletes.len());
    for path in std::mem::take(&mut plan.deletes) {
        let inside = kept.last().is_some_and(|parent| path.len() > parent.len() && path.starts_with(parent) && path[parent.len()] == b'/');
        if !inside {
            kept.push(path);
        }
    }
    plan.deletes = kept;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, mtime_ns: i64) -> ManifestEntry {
        ManifestEntry { path: path.into(), kind: EntryKind::EntryFile as i32, size, mtime_ns, mode: 0o644, link_target: vec![] }
    }

    fn dir(path: &str) -> ManifestEntry {
        ManifestEntry { path: path.into(), kind: EntryKind::EntryDirectory as i32, size: 0, mtime_ns: 1, mode: 0o755, link_target: vec![] }
    }

    #[test]
    fn sends_changes_and_deletes_extras() {
        let host = vec![dir("a"), file("a/x", 1, 1), file("b", 2, 2), file("c", 3, 3)];
        let guest = vec![dir("a"), file("a/x", 1, 1), file("b", 2, 9), dir("d"), file("d/y", 1, 1), dir("c"), file("c/z", 1, 1)];
        let plan = compare(&host, guest);
        let sent: Vec<&[u8]> = plan.sends.iter().map(|e| e.path.as_slice()).collect();
        assert_eq!(sent, vec![&b"b"[..], b"c"]);
        assert_eq!(plan.deletes, vec![b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(plan.bytes, 5);
        assert!(compare(&host, host.clone()).is_empty());
    }
}
