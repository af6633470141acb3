//! `hutch diff` for a synced workspace: the guest's changes reach the host
//! by themselves, so what is left to show is what did not: each conflict
//! whose copy is still there, as a patch that would replace the host's
//! version with the guest's (`hutch diff | git apply` takes them all), and
//! the refusals, as notes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::events::{self, Event};
use crate::sync::diff::{Side, render};

/// What `hutch diff` prints: the patch on stdout, the notes on stderr.
#[derive(Debug, Default)]
pub struct Report {
    /// The conflicts as a patch.
    pub patch: String,
    /// One line per conflict and refusal.
    pub notes: Vec<String>,
}

/// The report of the synced workspace of `root`, whose state folder is `dir`.
pub fn report(root: &Path, dir: &Path) -> Report {
    let mut report = Report::default();
    let mut seen = std::collections::BTreeSet::new();
    for event in events::read(dir) {
        match event.kind.as_str() {
            "conflict" if !event.copy.is_empty() && seen.insert(event.copy.clone()) => conflict(root, &event, &mut report),
            "refused" => report.notes.push(format!("sync: {}", event.line())),
            _ => {}
        }
    }
    report
}

fn conflict(root: &Path, event: &Event, report: &mut Report) {
    let copy = root.join(&event.copy);
    let Some(guest) = side(&copy) else { return };
    report.notes.push(format!("sync: conflict on {}: the guest's version is {} (the host's stays)", event.path, event.copy));
    render(&mut report.patch, &event.path, side(&root.join(&event.path)).as_ref(), Some(&guest));
}

fn side(path: &Path) -> Option<Side> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        use std::os::unix::ffi::OsStrExt;
        return Some(Side::Link(std::fs::read_link(path).ok()?.as_os_str().as_bytes().to_vec()));
    }
    meta.is_file().then(|| std::fs::read(path).ok().map(|data| Side::File(meta.permissions().mode(), data))).flatten()
}
