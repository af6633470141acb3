//! Where audit lines are kept, how a file is appended to and rotated, and
//! which files `hutch audit` reads.
//!
//! A VM's events go to its project's file, `audit/<project>.jsonl` in the
//! state folder, where `<project>` is the default VM name of its workspace
//! (`myapp-1a2b3c`; `no-workspace` for VMs without one). So `hutch run
//! --rm`, whose VM is gone when it returns, leaves its lines where `hutch
//! log` in that project finds them, and concurrent VMs of one project
//! share a file, each line naming its VM.
//!
//! Past [`limits::AUDIT_FILE_BYTES`] the file is rotated (`.jsonl` →
//! `.jsonl.1` → `.jsonl.2` …), keeping [`limits::AUDIT_FILES`] files. The
//! writer that crosses the cap rotates, under an exclusive lock on
//! `<project>.lock`, and only if the file it wrote to is still the current
//! one: two writers never rotate twice. A writer that opened the file just
//! before the rename appends its line to `.jsonl.1`, which `hutch audit`
//! reads too.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::Event;
use crate::state::{StateDir, VmRecord, default_name};
use crate::untrusted::{limits, text};

/// The folder of the audit logs, in the state folder.
pub fn dir(state: &StateDir) -> PathBuf {
    state.root().join("audit")
}

/// The project a VM's events belong to.
pub fn project_key(record: &VmRecord) -> String {
    record.workspace.as_deref().map_or_else(|| "no-workspace".to_owned(), |ws| default_name(ws).to_string())
}

/// The current audit file of `record`'s project.
pub fn project_file(state: &StateDir, record: &VmRecord) -> PathBuf {
    file_for(state, &project_key(record))
}

/// The current audit file of project `key`.
pub fn file_for(state: &StateDir, key: &str) -> PathBuf {
    dir(state).join(format!("{key}.jsonl"))
}

/// `file` and its rotated predecessors that exist, oldest first.
pub fn files_oldest_first(file: &Path) -> Vec<PathBuf> {
    (1..limits::AUDIT_FILES).rev().map(|n| rotated(file, n)).chain([file.to_path_buf()]).filter(|f| f.exists()).collect()
}

/// Every project's current file, for finding a VM by name.
pub fn project_files(state: &StateDir) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(state))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

/// The events of the last `max_bytes` of `file`, oldest first: for readers
/// that want what happened recently (`hutch mcp`'s `network` tool) without
/// reading a log that grows for the project's whole life. A line cut by the
/// window's start, and lines that are not events, are skipped.
pub fn recent(file: &Path, max_bytes: u64) -> std::io::Result<Vec<Event>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut opened = match File::open(file) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let from = opened.metadata()?.len().saturating_sub(max_bytes);
    opened.seek(SeekFrom::Start(from))?;
    let mut text = Vec::new();
    opened.take(max_bytes).read_to_end(&mut text)?;
    let mut lines = text.split(|b| *b == b'\n');
    if from > 0 {
        lines.next();
    }
    Ok(lines.filter_map(|line| serde_json::from_slice(line).ok()).collect())
}

fn rotated(file: &Path, n: usize) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Appends `event` to `file` as one line (one `write(2)`, `O_APPEND`), then
/// rotates the file if it has grown past its cap.
pub fn append(file: &Path, event: &Event) -> std::io::Result<()> {
    append_capped(file, event, limits::AUDIT_FILE_BYTES.max)
}

/// [`append`], rotating past `cap` bytes.
fn append_capped(file: &Path, event: &Event, cap: u64) -> std::io::Result<()> {
    if let Some(folder) = file.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder)?;
    }
    let json = serde_json::to_string(event).map_err(std::io::Error::other)?;
    let mut line = text::json_safe(&json).into_owned().into_bytes();
    line.push(b'\n');
    let mut opened = File::options().append(true).create(true).mode(0o600).open(file)?;
    opened.write_all(&line)?;
    if opened.metadata()?.len() > cap {
        rotate(file, &opened)?;
    }
    Ok(())
}

/// Shifts `file` to `.1` (and older ones up, dropping the oldest), unless
/// another writer did already: `opened` must still be the current file.
fn rotate(file: &Path, opened: &File) -> std::io::Result<()> {
    let lock = File::options().create(true).append(true).mode(0o600).open(file.with_extension("lock"))?;
    let _held = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    let ours = opened.metadata()?;
    match std::fs::metadata(file) {
        Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {}
        _ => return Ok(()),
    }
    for n in (1..limits::AUDIT_FILES - 1).rev() {
        let from = rotated(file, n);
        if from.exists() {
            std::fs::rename(&from, rotated(file, n + 1))?;
        }
    }
    std::fs::rename(file, rotated(file, 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Exec, What};

    #[test]
    fn a_flood_is_rotated_and_bounded_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit").join("p.jsonl");
        let event =
            Event { time: String::new(), vm: "web".into(), what: What::Exec(Exec { argv: vec!["x".repeat(1000)], ..Exec::default() }) };
        let cap = 64 << 10;
        for _ in 0..(cap as usize / 1000) * (limits::AUDIT_FILES + 2) {
            append_capped(&file, &event, cap).unwrap();
        }
        let files = files_oldest_first(&file);
        assert_eq!(files.len(), limits::AUDIT_FILES, "{files:?}");
        let total: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
        assert!(total <= (cap + 2048) * limits::AUDIT_FILES as u64, "{total}");
        assert!(!rotated(&file, limits::AUDIT_FILES).exists());
        assert!(std::fs::read_to_string(&file).unwrap().lines().all(|l| serde_json::from_str::<Event>(l).is_ok()));
    }

    #[test]
    fn recent_reads_whole_events_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.jsonl");
        let event =
            |n: i32| Event { time: String::new(), vm: "web".into(), what: What::Exec(Exec { exit_code: Some(n), ..Exec::default() }) };
        for n in 0..10 {
            append(&file, &event(n)).unwrap();
        }
        let line = serde_json::to_vec(&event(0)).unwrap().len() as u64 + 1;
        assert_eq!(recent(&file, 2 * line + 5).unwrap(), [event(8), event(9)]);
        assert!(recent(&dir.path().join("none.jsonl"), 100).unwrap().is_empty());
    }
}
