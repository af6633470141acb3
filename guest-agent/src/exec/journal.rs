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
//! One agent at a time writes the journal: it holds an exclusive lock on
//! `sessions.lock` while it runs sessions (and only then, so an agent that
//! runs none holds no extra descriptor). Whoever takes the lock first reads
//! what the previous holder left, so sessions of an agent that crashed are
//! found at the next start, or at the next session of an agent sharing the
//! dir. An agent that finds the lock held (another live agent on the same
//! dir: tests, a person trying things) writes nothing and touches nothing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use hutch_proto::v1::{JournalEntry, SessionInfo, SessionJournal, SessionState};
use nix::fcntl::{Flock, FlockArg};
use prost::Message;

/// The session journal in one state dir.
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    /// The lock, while this agent runs sessions.
    lock: Mutex<Option<Flock<File>>>,
}

impl Journal {
    /// The journal in `state_dir`, and the sessions the previous agent left
    /// (now ended: what still ran of them is killed). `None` when the dir
    /// is unusable.
    pub fn open(state_dir: &Path) -> (Option<Journal>, Vec<SessionInfo>) {
        if let Err(e) = std::fs::create_dir_all(state_dir) {
            tracing::warn!("no session journal in {}: {e}; sessions of a crashed agent would not be reported", state_dir.display());
            return (None, Vec::new());
        }
        let journal = Journal { dir: state_dir.to_path_buf(), path: state_dir.join("sessions.journal"), lock: Mutex::new(None) };
        // Take over whatever a previous agent left, then let go until a session runs.
        let lost = journal.record(&[]);
        (Some(journal), lost)
    }

    /// Replaces the journal with `running`. Takes the lock first if this
    /// agent does not hold it, and returns the sessions the previous holder
    /// left (ended now); lets it go again when nothing runs.
    pub fn record(&self, running: &[JournalEntry]) -> Vec<SessionInfo> {
        self.record_with(|| running.to_vec())
    }

    /// [`Journal::record`] with the running sessions listed under the
    /// journal's own mutex: two sessions' events recorded at once are
    /// written in the order they were listed, so a list made before a
    /// session ended never overwrites the one made after (and keeps the lock
    /// held for a session that no longer runs).
    pub fn record_with(&self, running: impl FnOnce() -> Vec<JournalEntry>) -> Vec<SessionInfo> {
        let mut lock = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let running = running();
        let mut lost = Vec::new();
        if lock.is_none() {
            match self.acquire() {
                Ok(Some(acquired)) => {
                    *lock = Some(acquired);
                    lost = self.take_over();
                }
                Ok(None) => {
                    tracing::info!("another agent keeps the session journal in {}; this one keeps none for now", self.dir.display());
                    return lost;
                }
                Err(e) => {
                    tracing::warn!("cannot lock the session journal in {}: {e}", self.dir.display());
                    return lost;
                }
            }
        }
        self.write(&running);
        if running.is_empty() {
            *lock = None; // nothing to look after: the descriptor goes
        }
        lost
    }

    /// The lock, or `None` when another agent holds it.
    fn acquire(&self) -> std::io::Result<Option<Flock<File>>> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join("sessions.lock"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(errno.into()),
        }
    }

    /// Reads what the previous holder left; ends what still runs of it.
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

    /// Writes `running` as the journal (beside, flushed to disk, then
    /// renamed: a VM powered off right after a session started still has it).
    fn write(&self, running: &[JournalEntry]) {
        let journal = SessionJournal { boot_id: boot_id(), sessions: running.to_vec() };
        let staging = self.path.with_extension("new");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&staging)?;
            std::io::Write::write_all(&mut file, &journal.encode_to_vec())?;
            file.sync_data()?;
            std::fs::rename(&staging, &self.path)
        };
        if let Err(e) = write() {
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

    /// A running session's entry, with a pid that cannot be running (so
    /// taking over kills nothing).
    fn running(name: &str) -> JournalEntry {
        let info = SessionInfo { name: name.into(), pid: u32::MAX, state: SessionState::SessionRunning as i32, ..Default::default() };
        JournalEntry { info: Some(info), start_ticks: 1 }
    }

    #[test]
    fn the_lock_is_held_while_sessions_run_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let (first, lost) = Journal::open(dir.path());
        let first = first.unwrap();
        assert!(lost.is_empty());
        assert!(first.lock.lock().unwrap().is_none(), "no session: no descriptor held");
        assert!(first.record(&[running("a")]).is_empty());
        assert!(first.lock.lock().unwrap().is_some());

        // A second agent on the same dir neither takes over nor writes.
        let (second, lost) = Journal::open(dir.path());
        let second = second.unwrap();
        assert!(lost.is_empty(), "a live agent's sessions are not lost");
        assert!(second.record(&[running("b")]).is_empty());
        let on_disk = SessionJournal::decode(std::fs::read(dir.path().join("sessions.journal")).unwrap().as_slice()).unwrap();
        assert_eq!(on_disk.sessions.len(), 1);
        assert_eq!(on_disk.sessions[0].info.as_ref().unwrap().name, "a");

        first.record(&[]);
        assert!(first.lock.lock().unwrap().is_none());
        assert!(second.record(&[running("b")]).is_empty(), "the first one ended its sessions cleanly");
    }

    #[test]
    fn whoever_takes_the_lock_next_lists_what_ran_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path());
        journal.unwrap().record(&[running("build")]);
        // Dropped while holding the lock, with a session running: a crash.
        let (_journal, lost) = Journal::open(dir.path());
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].name, "build");
        assert_eq!(lost[0].state, SessionState::SessionLost as i32);
        assert_eq!(lost[0].lost_reason, "the agent restarted");
    }
}
