//! A synced workspace (`hutch up --sync`, `hutch sync --watch`): the
//! guest's copy and the host's project kept in step both ways, with the
//! host deciding everything.
//!
//! The host watches its project ([`hutch_proto::watch`]) and pushes what
//! changed to the guest as Syncs with `push` set; the agent's `Watch` call
//! streams the guest's changes back, which the host applies with its own
//! checks ([`super::beneath`]). [`Engine`] holds the decisions: per path,
//! the host's entry now (`H`, the watched manifest), the guest's report
//! (`X`) and the last entry both sides agreed on (`B`, the base):
//!
//! | case | host → guest (H changed) | guest → host (X reported) |
//! |---|---|---|
//! | the other side has it already | agreed: B = H | agreed: B = X |
//! | the other side did not change it since B | push H; B = H | apply X on the host; B = X |
//! | both changed it (a conflict) | the push skips it; the guest's report decides | the host's version stays; the guest's goes beside it as `NAME.hutch-guest` (files and symlinks), and H is pushed back |
//!
//! The guest never writes the host's `.git` (the walk leaves it out, and a
//! path through `.git` is refused); what the host refuses is named on stderr
//! and in the sync's event log ([`events`]), never dropped silently.
//! [`run`] is the loop that connects it to an agent.

pub mod conflicts;
pub mod daemon;
pub mod events;
pub mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hutch_proto::tree::same_or_absent;
use hutch_proto::v1::{EntryKind, ManifestEntry, SnapshotState, WalkRules};
use hutch_proto::watch::{Change, Method, Watched};
use prost::Message;

use self::events::{Event, EventLog};
use super::beneath::{Beneath, BeneathError, NewFile, Refusal, check_link, check_path};

/// Files larger than this are not taken from the guest (its changes to
/// them are refused and named).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// The suffix of a conflict copy: the guest's version beside the host's.
pub const CONFLICT_SUFFIX: &str = ".hutch-guest";
/// The base's file in the sync's state folder.
const BASE_FILE: &str = "base.state";

/// Why a synced workspace stopped.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The host project cannot be watched.
    #[error(transparent)]
    Watch(#[from] hutch_proto::watch::WatchError),
    /// The sync's state folder or the project root is unusable.
    #[error("{what}: {source}")]
    Local {
        /// What hutch was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The agent broke the protocol (the session ends; a daemon reconnects).
    #[error("the agent broke the sync protocol: {0}")]
    Protocol(String),
    /// The agent refused or failed a call.
    #[error(transparent)]
    Sync(#[from] super::SyncError),
    /// The VM's agent cannot be reached.
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    /// The VM's record cannot be read.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The VM's sync process did not start.
    #[error("the sync process of {name} did not start: {source}")]
    Daemon {
        /// The VM.
        name: String,
        /// What went wrong.
        source: crate::daemon::DaemonError,
    },
}

impl LiveError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            LiveError::Sync(e) => e.hint(),
            LiveError::Connect(e) => e.hint(),
            LiveError::State(e) => e.hint(),
            LiveError::Protocol(_) => Some(
                "an agent without the capability \"sync.watch\" cannot keep a synced workspace: update the VM image (`cargo xtask image`)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// What one guest change needs next: its file's data, or nothing.
pub enum Pending {
    /// Nothing more (not a file, refused with no data, or already applied).
    Done,
    /// Data follows; it is dropped (refused, or the host has it already).
    Discard {
        /// Bytes still to come.
        left: u64,
    },
    /// Data follows into this file, then [`Engine::finish_file`].
    Write(Box<Incoming>),
}

/// A guest file being received.
pub struct Incoming {
    file: NewFile,
    entry: ManifestEntry,
    /// Where it goes (the path, or its conflict copy's name).
    target: Vec<u8>,
    /// What the host had at the path when the write began (to notice a host
    /// edit that races it).
    host_before: Option<ManifestEntry>,
    conflict_of: Option<Vec<u8>>,
    /// Bytes still to come.
    pub left: u64,
}

impl Incoming {
    /// Appends a chunk of the file's data.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.left = self.left.saturating_sub(data.len() as u64);
        self.file.write(data)
    }
}

/// The host's side of one synced workspace.
pub struct Engine {
    root: PathBuf,
    rules: WalkRules,
    beneath: Beneath,
    host: Watched,
    base: BTreeMap<Vec<u8>, ManifestEntry>,
    /// Paths to compare with the base at the next push (besides what the
    /// watch reports).
    recheck: BTreeSet<Vec<u8>>,
    /// Paths a push skipped: the guest changed them too, and its report decides.
    awaiting: BTreeSet<Vec<u8>>,
    base_file: PathBuf,
    base_unsaved: bool,
    events: EventLog,
    max_file: u64,
}

impl Engine {
    /// Watches the project at `root` (canonical) with `rules`; the sync's
    /// state (the base, the event log) lives in `state_dir`.
    pub fn start(root: &Path, rules: &WalkRules, state_dir: &Path, method: Method) -> Result<Engine, LiveError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|source| LiveError::Local { what: format!("creating {}", state_dir.display()), source })?;
        let host = Watched::start(root, rules, method)?;
        let beneath =
            Beneath::open(root).map_err(|e| LiveError::Local { what: format!("opening {}", root.display()), source: e.into() })?;
        let base_file = state_dir.join(BASE_FILE);
        let base = load_base(&base_file, root)
            .map_err(|source| LiveError::Local { what: format!("reading {}", base_file.display()), source })?
            .unwrap_or_default();
        Ok(Engine {
            root: root.to_path_buf(),
            rules: rules.clone(),
            beneath,
            host,
            base,
            recheck: BTreeSet::new(),
            awaiting: BTreeSet::new(),
            base_file,
            base_unsaved: false,
            events: EventLog::new(state_dir),
            max_file: MAX_FILE_BYTES,
        })
    }

    /// Whether the host and guest ever agreed (a base exists): if not, the
    /// first thing to do is a full copy.
    pub fn has_base(&self) -> bool {
        self.base_file.exists()
    }

    /// The base after a full copy (`--ro`'s Sync): the tree it sent. Every
    /// path is compared again at the next push, so host edits made during
    /// the copy go out then.
    pub fn copied(&mut self, tree: Vec<ManifestEntry>) {
        self.base = tree.into_iter().map(|e| (e.path.clone(), e)).collect();
        self.base_unsaved = true;
        self.compare_everything();
    }

    /// Compares every path of the host and the base at the next push.
    pub fn compare_everything(&mut self) {
        let paths: Vec<Vec<u8>> = self.host.manifest().keys().chain(self.base.keys()).cloned().collect();
        self.recheck.extend(paths);
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The walk rules.
    pub fn rules(&self) -> &WalkRules {
        &self.rules
    }

    /// The host watch (to wait on its events).
    pub fn watched(&mut self) -> &mut Watched {
        &mut self.host
    }

    /// The event log.
    pub fn events(&mut self) -> &mut EventLog {
        &mut self.events
    }

    /// Largest file taken from the guest.
    pub fn max_file(&self) -> u64 {
        self.max_file
    }

    /// Looks again at the paths a push skipped (a flush does: a guest
    /// report that never comes must not hold a path back for ever).
    pub fn retry_skipped(&mut self) {
        let awaiting = std::mem::take(&mut self.awaiting);
        self.recheck.extend(awaiting);
    }

    /// Whether paths a push skipped still wait for the guest's report.
    pub fn awaiting_guest(&self) -> bool {
        !self.awaiting.is_empty()
    }

    /// Whether a push may have something to send.
    pub fn host_dirty(&self) -> bool {
        self.host.is_dirty() || !self.recheck.is_empty()
    }

    /// What the host changed since the base: entries to send (sorted,
    /// folders first) and paths to delete (deepest first). Paths a push
    /// skipped wait for the guest's report.
    pub fn host_changes(&mut self) -> (Vec<ManifestEntry>, Vec<Vec<u8>>) {
        let changed: Vec<Change> = self.host.refresh();
        for notice in self.host.take_notices() {
            self.events.record(Event::notice(format!("host: {notice}")));
        }
        let mut paths = std::mem::take(&mut self.recheck);
        paths.extend(changed.into_iter().map(|c| c.path));
        let (mut sends, mut deletes) = (Vec::new(), Vec::new());
        for path in paths {
            if self.awaiting.contains(&path) {
                continue;
            }
            let now = self.host.manifest().get(&path);
            if same_or_absent(now, self.base.get(&path)) {
                continue;
            }
            match now {
                Some(entry) => sends.push(entry.clone()),
                None => deletes.push(path),
            }
        }
        sends.sort_by(|a, b| a.path.cmp(&b.path));
        deletes.sort_by(|a, b| b.cmp(a));
        (sends, deletes)
    }

    /// A push went through: what was sent is agreed on, except what the
    /// guest skipped (its own change to it is on the way).
    pub fn pushed(&mut self, sent: Vec<ManifestEntry>, deleted: Vec<Vec<u8>>, skipped: Vec<Vec<u8>>, skipped_more: bool) {
        let skipped: BTreeSet<Vec<u8>> = skipped.into_iter().collect();
        for entry in sent {
            if skipped_more {
                self.recheck.insert(entry.path);
            } else if skipped.contains(&entry.path) {
                self.awaiting.insert(entry.path);
            } else {
                self.base.insert(entry.path.clone(), entry);
            }
        }
        for path in deleted {
            if skipped_more {
                self.recheck.insert(path);
            } else if skipped.contains(&path) {
                self.awaiting.insert(path);
            } else {
                self.base.remove(&path);
            }
        }
        self.base_unsaved = true;
    }

    /// The guest reported a change to one path: `synced` is what it last
    /// agreed on, `current` what it holds now. Returns what to do with the
    /// data that follows (files).
    pub fn guest_change(
        &mut self,
        path: &[u8],
        synced: Option<&ManifestEntry>,
        current: Option<ManifestEntry>,
        too_large: bool,
    ) -> Pending {
        self.awaiting.remove(path);
        let data = current.as_ref().filter(|c| c.kind == EntryKind::EntryFile as i32 && !too_large).map_or(0, |c| c.size);
        let discard = |left| if left == 0 { Pending::Done } else { Pending::Discard { left } };
        if let Err(why) = self.admissible(path, current.as_ref(), too_large) {
            self.refuse(path, &why);
            return discard(data);
        }
        let host_now = match self.beneath.stat(path) {
            Ok(now) => now,
            Err(e) => {
                self.refuse_os(path, e);
                return discard(data);
            }
        };
        if same_or_absent(host_now.as_ref(), current.as_ref()) {
            self.agree(path, current);
            return discard(data);
        }
        // A report made against an older agreement crossed one of our
        // pushes, which replaced what it reports: a conflict too.
        let crossed = !same_or_absent(synced, self.base.get(path));
        let conflict = crossed || !same_or_absent(host_now.as_ref(), self.base.get(path));
        if conflict {
            // The host's version stays, and goes back to the guest, which
            // has the version it reported.
            self.recheck.insert(path.to_vec());
            self.set_base(path, current.clone());
        }
        let Some(entry) = current else {
            if !conflict {
                self.apply_delete(path);
            }
            return Pending::Done;
        };
        match EntryKind::try_from(entry.kind) {
            Ok(EntryKind::EntryDirectory) => {
                if !conflict {
                    match self.beneath.make_dir(path, entry.mode) {
                        Ok(()) => self.agree(path, Some(entry)),
                        Err(e) => self.refuse_os(path, e),
                    }
                }
                Pending::Done
            }
            Ok(EntryKind::EntrySymlink) => {
                let target = if conflict { self.conflict_name(path) } else { Some(path.to_vec()) };
                if let Some(target) = target {
                    match self.beneath.make_link(&target, &entry.link_target, entry.mtime_ns) {
                        Ok(()) if conflict => self.conflicted(path, &target),
                        Ok(()) => self.agree(path, Some(entry)),
                        Err(e) => self.refuse_os(path, e),
                    }
                }
                Pending::Done
            }
            Ok(EntryKind::EntryFile) => {
                let target = if conflict { self.conflict_name(path) } else { Some(path.to_vec()) };
                let Some(target) = target else { return discard(data) };
                match self.beneath.create(&target) {
                    Ok(file) => Pending::Write(Box::new(Incoming {
                        file,
                        left: entry.size,
                        entry,
                        target,
                        host_before: host_now,
                        conflict_of: conflict.then(|| path.to_vec()),
                    })),
                    Err(e) => {
                        self.refuse_os(path, e);
                        discard(data)
                    }
                }
            }
            _ => {
                self.refuse(path, &Refusal::Kind);
                Pending::Done
            }
        }
    }

    /// A guest file has all its data: put it in place, unless the host
    /// changed the path meanwhile (then the guest's version becomes a
    /// conflict copy, and the host's is pushed back).
    pub fn finish_file(&mut self, incoming: Incoming) {
        let Incoming { file, entry, target, host_before, conflict_of, .. } = incoming;
        let path = entry.path.clone();
        if file.written() != entry.size {
            self.refuse(&path, &Refusal::BadPath("its data does not match its size"));
            return;
        }
        let still = |parent: std::os::fd::BorrowedFd<'_>, name: &[u8]| {
            let now = hutch_proto::tree::stat_at(&parent, name, Vec::new()).ok().flatten();
            same_or_absent(now.as_ref(), host_before.as_ref()) || conflict_of.is_some()
        };
        match file.commit(entry.mode, entry.mtime_ns, still) {
            Ok(None) => match conflict_of {
                Some(original) => self.conflicted(&original, &target),
                None => self.agree(&path, Some(entry)),
            },
            Ok(Some(file)) => {
                // The host wrote the file while the guest's arrived: the
                // host's stays, the guest's goes beside it.
                self.recheck.insert(path.clone());
                self.set_base(&path, Some(entry));
                let Some(copy) = self.conflict_name(&path) else { return };
                let name = copy.rsplit(|b| *b == b'/').next().unwrap_or(&copy).to_vec();
                match file.rename_to(&name) {
                    Ok(()) => self.conflicted(&path, &copy),
                    Err(e) => self.refuse_os(&path, e),
                }
            }
            Err(e) => self.refuse_os(&path, e),
        }
    }

    /// Whether the guest may change `path` on the host at all.
    fn admissible(&self, path: &[u8], current: Option<&ManifestEntry>, too_large: bool) -> Result<(), Refusal> {
        let parts = check_path(path)?;
        let is_dir = current.is_some_and(|c| c.kind == EntryKind::EntryDirectory as i32);
        // Every folder above must be one the sync holds, and the path too.
        for depth in 1..parts.len() {
            if !self.host.rules().includes(&parts[..depth].join(&b'/'), true) {
                return Err(Refusal::Excluded);
            }
        }
        if !self.host.rules().includes(path, is_dir) {
            return Err(Refusal::Excluded);
        }
        if let Some(entry) = current {
            if entry.kind == EntryKind::EntryFile as i32 && (too_large || entry.size > self.max_file) {
                return Err(Refusal::TooLarge { size: entry.size, max: self.max_file });
            }
            if entry.kind == EntryKind::EntrySymlink as i32 {
                check_link(&self.root, path, &entry.link_target)?;
            }
        }
        Ok(())
    }

    fn apply_delete(&mut self, path: &[u8]) {
        match self.beneath.remove(path) {
            Ok(true) => self.agree(path, None),
            // A folder the host put something into: it stays, and goes back.
            Ok(false) => {
                self.set_base(path, None);
                self.recheck.insert(path.to_vec());
            }
            Err(e) => self.refuse_os(path, e),
        }
    }

    fn agree(&mut self, path: &[u8], entry: Option<ManifestEntry>) {
        self.set_base(path, entry);
        self.host.mark(path);
    }

    fn set_base(&mut self, path: &[u8], entry: Option<ManifestEntry>) {
        match entry {
            Some(entry) => {
                self.base.insert(path.to_vec(), entry);
            }
            None => {
                self.base.remove(path);
            }
        }
        self.base_unsaved = true;
    }

    /// A free name beside `path` for the guest's version.
    fn conflict_name(&mut self, path: &[u8]) -> Option<Vec<u8>> {
        let (dir, name) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => (&path[..0], path),
        };
        for n in 1..100u32 {
            let suffix = if n == 1 { CONFLICT_SUFFIX.to_owned() } else { format!("{CONFLICT_SUFFIX}-{n}") };
            let keep = name.len().min(255 - suffix.len());
            let candidate = [dir, &name[..keep], suffix.as_bytes()].concat();
            if matches!(self.beneath.stat(&candidate), Ok(None)) {
                return Some(candidate);
            }
        }
        self.refuse(path, &Refusal::BadPath("no free name for its conflict copy"));
        None
    }

    fn conflicted(&mut self, path: &[u8], copy: &[u8]) {
        // The copy is new on the host: it goes to the guest at the next push.
        self.recheck.insert(copy.to_vec());
        self.host.mark(copy);
        self.events.record(Event::conflict(path, Some(copy)));
    }

    fn refuse(&mut self, path: &[u8], why: &Refusal) {
        self.events.record(Event::refused(path, why.to_string()));
    }

    fn refuse_os(&mut self, path: &[u8], e: BeneathError) {
        match e {
            BeneathError::Refused(why) => self.refuse(path, &why),
            BeneathError::Os(errno) => self.events.record(Event::refused(path, format!("the host could not apply it: {errno}"))),
        }
    }

    /// Writes the base to its file if it changed (atomically).
    pub fn save_base(&mut self) {
        if !self.base_unsaved {
            return;
        }
        let state = SnapshotState {
            root: self.root.display().to_string(),
            rules: Some(self.rules.clone()),
            entries: self.base.values().cloned().collect(),
        };
        let tmp = self.base_file.with_extension("tmp");
        let written = std::fs::write(&tmp, state.encode_to_vec()).and_then(|()| std::fs::rename(&tmp, &self.base_file));
        match written {
            Ok(()) => self.base_unsaved = false,
            Err(e) => eprintln!("hutch: cannot save {}: {e}", self.base_file.display()),
        }
    }
}

/// Reads a saved base; `None` when there is none (or it is another root's).
fn load_base(file: &Path, root: &Path) -> std::io::Result<Option<BTreeMap<Vec<u8>, ManifestEntry>>> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let state = SnapshotState::decode(bytes.as_slice()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if Path::new(&state.root) != root {
        return Ok(None);
    }
    Ok(Some(state.entries.into_iter().map(|e| (e.path.clone(), e)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::beneath::shown;

    fn file(path: &[u8], size: u64) -> ManifestEntry {
        ManifestEntry { path: path.to_vec(), kind: EntryKind::EntryFile as i32, size, mtime_ns: 1, mode: 0o644, link_target: Vec::new() }
    }

    /// What a hostile agent may report, fed to the host's engine as its
    /// Watch stream would: each is refused, named in the event log, and
    /// nothing is written outside the project (or into its `.git`).
    #[test]
    fn hostile_reports_are_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state, outside) = (dir.path().join("p"), dir.path().join("state"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("esc")).unwrap();
        let root = root.canonicalize().unwrap();
        let rules = WalkRules { exclude_dirs: vec!["node_modules".into()], ..WalkRules::default() };
        let mut engine = Engine::start(&root, &rules, &state, Method::Poll).unwrap();
        let link = |path: &[u8], target: &[u8]| ManifestEntry {
            path: path.to_vec(),
            kind: EntryKind::EntrySymlink as i32,
            link_target: target.to_vec(),
            ..ManifestEntry::default()
        };
        let hostile: Vec<(&[u8], ManifestEntry, bool)> = vec![
            (b"../outside/x", file(b"../outside/x", 1), false),
            (b"/etc/passwd", file(b"/etc/passwd", 1), false),
            (b"a/./b", file(b"a/./b", 1), false),
            (b"line\nbreak", file(b"line\nbreak", 1), false),
            (b".git/hooks/pre-commit", file(b".git/hooks/pre-commit", 1), false),
            (b"node_modules/x.js", file(b"node_modules/x.js", 1), false),
            (b"esc/x", file(b"esc/x", 1), false),
            (b"huge", file(b"huge", MAX_FILE_BYTES + 1), false),
            (b"withheld", file(b"withheld", 10), true),
            (b"up", link(b"up", b"../.."), false),
            (b"abs", link(b"abs", b"/etc/passwd"), false),
            (b"sneaky", link(b"sneaky", b"esc/../../.."), false),
        ];
        for (path, entry, too_large) in hostile {
            let pending = engine.guest_change(path, None, Some(entry), too_large);
            assert!(matches!(pending, Pending::Done | Pending::Discard { .. }), "{} was taken", shown(path));
        }
        let events = events::read(&state);
        assert_eq!(events.iter().filter(|e| e.kind == "refused").count(), 12, "{events:#?}");
        assert!(events.iter().any(|e| e.path == "line\\nbreak"), "control characters are escaped: {events:#?}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(root.join(".git")).unwrap().count(), 0);
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
