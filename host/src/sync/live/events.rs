//! What a synced workspace tells the user: refusals, conflicts and notices,
//! each one line on stderr (the daemon's log, or the terminal of `hutch
//! sync --watch`) and one JSON line in `events.jsonl` in the sync's state
//! folder, where `hutch diff` and `hutch sync` find them again. Guest text
//! (paths, reasons) is escaped on both; the file is capped (the older half
//! is dropped past [`MAX_BYTES`]), so a guest that provokes refusals
//! without end cannot fill the host's disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sync::beneath::shown;

/// The event log's file in the sync's state folder.
pub const FILE: &str = "events.jsonl";
/// Size at which the log is cut to its newer half.
const MAX_BYTES: u64 = 1 << 20;

/// One thing the user should know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the epoch.
    pub time: u64,
    /// `refused`, `conflict` or `notice`.
    pub kind: String,
    /// The path concerned (escaped), if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Why it was refused, where the guest's version of a conflict went, or the notice.
    pub detail: String,
    /// A conflict's copy: where the guest's version is (escaped).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub copy: String,
}

impl Event {
    /// The host refused a guest change to `path`.
    pub fn refused(path: &[u8], why: String) -> Event {
        Event { time: crate::state::now_unix(), kind: "refused".into(), path: shown(path), detail: why, copy: String::new() }
    }

    /// Both sides changed `path`: the host's version stayed; the guest's is at `copy`.
    pub fn conflict(path: &[u8], copy: Option<&[u8]>) -> Event {
        let detail = match copy {
            Some(copy) => format!("changed on both sides: the host's version stays, the guest's is at {}", shown(copy)),
            None => "changed on both sides: the host's version stays".into(),
        };
        Event {
            time: crate::state::now_unix(),
            kind: "conflict".into(),
            path: shown(path),
            detail,
            copy: copy.map(shown).unwrap_or_default(),
        }
    }

    /// Something else (an overflow and rescan, a watch limit).
    pub fn notice(text: String) -> Event {
        Event { time: crate::state::now_unix(), kind: "notice".into(), path: String::new(), detail: text, copy: String::new() }
    }

    /// One line for a person.
    pub fn line(&self) -> String {
        match self.kind.as_str() {
            "refused" => format!("refused the guest's change to {}: {}", self.path, self.detail),
            "conflict" => format!("conflict on {}: {}", self.path, self.detail),
            _ => self.detail.clone(),
        }
    }
}

/// The log of one synced workspace.
pub struct EventLog {
    file: PathBuf,
    /// Events recorded by this process, for tests and summaries.
    pub recorded: usize,
}

impl EventLog {
    /// The log in `state_dir`.
    pub fn new(state_dir: &Path) -> EventLog {
        EventLog { file: state_dir.join(FILE), recorded: 0 }
    }

    /// Tells the user (stderr) and appends to the file.
    pub fn record(&mut self, event: Event) {
        eprintln!("hutch: sync: {}", event.line());
        self.recorded += 1;
        let Ok(mut line) = serde_json::to_string(&event) else { return };
        line.push('\n');
        if std::fs::metadata(&self.file).is_ok_and(|m| m.len() + line.len() as u64 > MAX_BYTES) {
            cut_to_newer_half(&self.file);
        }
        let appended =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.file).and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            eprintln!("hutch: sync: cannot write {}: {e}", self.file.display());
        }
    }
}

/// Every event in the log of `state_dir` (oldest first).
pub fn read(state_dir: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(state_dir.join(FILE)).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn cut_to_newer_half(file: &Path) {
    let Ok(text) = std::fs::read(file) else { return };
    let half = text.len() / 2;
    let start = text[half..].iter().position(|b| *b == b'\n').map_or(text.len(), |i| half + i + 1);
    let _ = std::fs::write(file, &text[start..]);
}
