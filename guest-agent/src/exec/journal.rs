//! What the agent writes down about its running sessions, so the next agent
//! knows what ended with this one.
//!
//! Sessions live in the agent's memory and end with it: a stopping agent
//! kills their process groups, a stopped VM takes them along. An agent that
//! crashes (or is killed with SIGKILL) cannot, and its service restarts it
//! with `KillMode=process`, so their processes would run on, out of reach.
//! So the agent keeps `sessions.journal` in its state dir: the running
//! sessions (name, pid, the pid's start time, command), rewritten whenever one
//! starts or ends. The next agent reads it at start: on the same boot it
//! kills each group still there (only when the leader's start time matches,
//! so a recycled pid is never touched), and it lists every one of them as
//! `lost`, saying whether the agent or the VM restarted.
//!
//! One agent per state dir writes the journal: it holds an exclusive lock on
//! `sessions.lock` for its life. A second agent on the same dir (tests, a
//! person trying things) gets no journal and touches nothing.

use std::fs::File;
use std::path::{Path, PathBuf};

use hutch_proto::v1::{JournalEntry, SessionInfo, SessionJournal, SessionState};
use nix::fcntl::{Flock, FlockArg};
use prost::Message;

/// The journal of one agent, which holds its lock.
pub struct Journal {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Journal {
    /// Takes over the journal in `state_dir`: returns it (or `None` when
    /// another agent holds it, or the dir is unusable) and the sessions the
    /// previous agent left, now ended.
    pub fn open(state_dir: &Path) -> (Option<Journal>, Vec<SessionInfo>) {
        match Journal::try_open(state_dir) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!("no session journal in {}: {e}; sessions of a crashed agent would not be reported", state_dir.display());
                (None, Vec::new())
            }
        }
    }

    fn try_open(state_dir: &Path) -> std::io::Result<(Option<Journal>, Vec<SessionInfo>)> {
        std::fs::create_dir_all(state_dir)?;
        let lock_file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(state_dir.join("sessions.lock"))?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, errno)) => {
                tracing::info!("another agent keeps the session journal in {} ({errno}); this one keeps none", state_dir.display());
                return Ok((None, Vec::new()));
            }
        };
        let journal = Journal { path: state_dir.join("sessions.journal"), _lock: lock };
        let lost = journal.take_over();
        journal.record(&[]);
        Ok((Some(journal), lost))
    }

    /// Reads what the previous agent left; ends what still runs of it.
    fn take_over(&self) -> Vec<SessionInfo> {
        let Ok(bytes) = std::fs::read(&self.path) else { return Vec::new() };
        let Ok(old) = SessionJournal::decode(bytes.as_slice()) else {
            tracing::warn!("ignoring an unreadable session journal at {}", self.path.display());
            return Vec::new();
        };
        let same_boot = !old.boot_id.is_empty() && old.boot_id == boot_id();
        let reason = if same_boot { "the agent restarted" } else { "the VM restarted" };
        old.sessions
            .into_iter()
            .filter_map(|entry| {
                let mut info = entry.info?;
                if same_boot {
                    end_leftover(info.pid, entry.start_ticks);
                }
                info.state = SessionState::SessionLost as i32;
                info.lost_reason = reason.to_owned();
                info.attached = false;
                info.viewers = 0;
                Some(info)
            })
            .collect()
    }

    /// A journal entry for a running session.
    pub fn entry(&self, info: SessionInfo) -> JournalEntry {
        let start_ticks = start_ticks(info.pid).unwrap_or(0);
        JournalEntry { info: Some(info), start_ticks }
    }

    /// Replaces the journal with `running` (written beside, flushed to disk,
    /// then renamed: a VM powered off right after a session started still
    /// has it).
    pub fn record(&self, running: &[JournalEntry]) {
        let journal = SessionJournal { boot_id: boot_id(), sessions: running.to_vec() };
        let staging = self.path.with_extension("new");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&staging)?;
            std::io::Write::write_all(&mut file, &journal.encode_to_vec())?;
            file.sync_data()?;
            std::fs::rename(&staging, &self.path)
        };
        let written = write();
        if let Err(e) = written {
            tracing::warn!("cannot write the session journal {}: {e}", self.path.display());
        }
    }
}

/// Kills what is left of a previous agent's session whose leader was `pid`
/// and started at `ticks`: only if that pid is still the same process (or is
/// gone, leaving group members that can only be the session's: a process
/// group id stays taken while any member lives).
fn end_leftover(pid: u32, ticks: u64) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    if pgid <= 1 {
        return;
    }
    match start_ticks(pid) {
        Some(now) if now != ticks || ticks == 0 => return, // another process has that pid now
        _ => {}
    }
    if nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL).is_ok() {
        tracing::info!(pgid, "killed what a previous agent's session left running");
    }
}

/// The start time of process `pid` in clock ticks since boot (Linux).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 (the command) is in parentheses and may hold anything; field
    // 22 is the 20th after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This boot's id (Linux), empty where there is none.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_start_time() {
        let me = std::process::id();
        let ticks = start_ticks(me).expect("a start time for this process");
        assert!(ticks > 0);
        assert_eq!(start_ticks(me), Some(ticks));
        assert_eq!(start_ticks(u32::MAX), None);
    }

    #[test]
    fn a_second_agent_on_the_same_dir_keeps_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (first, lost) = Journal::open(dir.path());
        assert!(first.is_some() && lost.is_empty());
        let (second, _) = Journal::open(dir.path());
        assert!(second.is_none());
    }

    #[test]
    fn the_next_agent_lists_what_ran_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path());
        let journal = journal.unwrap();
        // A pid that cannot be running, so nothing gets killed.
        let info = SessionInfo { name: "build".into(), pid: u32::MAX, state: SessionState::SessionRunning as i32, ..Default::default() };
        journal.record(&[JournalEntry { info: Some(info), start_ticks: 1 }]);
        drop(journal);
        let (_journal, lost) = Journal::open(dir.path());
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].name, "build");
        assert_eq!(lost[0].state, SessionState::SessionLost as i32);
        assert_eq!(lost[0].lost_reason, "the agent restarted");
    }
}
