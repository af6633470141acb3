//! `hutch diff` for a synced workspace: the guest's changes reach the host
//! by themselves, so what is left to show is what did not: each conflict
//! whose copy is still there, as a patch that would replace the host's
//! version with the guest's (`hutch diff | git apply` takes them all), and
//! the refusals, as notes.

use std::path::Path;

use super::events::{self, Event};
use crate::sync::diff::{Change, host_side, render};
use crate::untrusted::{Beneath, GuestPath};

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
    let host = match Beneath::open(root) {
        Ok(host) => host,
        Err(e) => {
            report.notes.push(format!("sync: cannot open the workspace to show conflicts: {e}"));
            return report;
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for event in events::read(dir) {
        match event.kind.as_str() {
            "conflict" if !event.copy.is_empty() && seen.insert(event.copy.clone()) => conflict(&host, &event, &mut report),
            "refused" => report.notes.push(format!("sync: {}", event.line())),
            _ => {}
        }
    }
    report
}

/// A conflict whose copy is still there, as a patch from the host's version
/// to the guest's. Both are read below the workspace, never through a
/// symlink (the paths were checked when the event was written, and are
/// checked again here).
fn conflict(host: &Beneath, event: &Event, report: &mut Report) {
    let (Ok(path), Ok(copy)) = (GuestPath::from_bytes(event.path.as_bytes()), GuestPath::from_bytes(event.copy.as_bytes())) else {
        return;
    };
    let Ok((Some(guest), _)) = host_side(host, &copy) else { return };
    let before = host_side(host, &path).ok().and_then(|(side, _)| side);
    report.notes.push(format!("sync: conflict on {}: the guest's version is {} (the host's stays)", path.shown(), copy.shown()));
    let change = Change { path, before, after: Some(guest), host_changed: false };
    let mut patch = Vec::new();
    let mut warn = |warning: String| report.notes.push(format!("sync: {warning}"));
    if render(&change, &mut patch, &mut warn).is_ok() {
        report.patch.push_str(&String::from_utf8_lossy(&patch));
    }
}
