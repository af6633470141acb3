//! A tree's manifest kept current by watching it, so that finding what
//! changed costs what changed, not the tree: both halves of a synced
//! workspace (the host's project, the guest's copy) use it.
//!
//! [`Watched::start`] reads the tree folder by folder with the walk's rules
//! ([`crate::rules`]), arming a watch on each folder before reading it, so a
//! change made while it reads is either seen by the read or reported by the
//! watch. From then on [`Watched::take_events`] turns the kernel's events
//! into a set of dirty paths, and [`Watched::refresh`] looks at exactly those
//! (a `lstat` each; a new folder is read as at the start) and returns what
//! changed. How it watches ([`Method`]):
//!
//! - **inotify** (Linux): one watch per included folder; ignored folders
//!   (`node_modules`, `target`, …) are never watched. When the kernel's event
//!   queue overflows, the next refresh reads the whole tree again and says so
//!   in [`Watched::take_notices`]; when the watch limit
//!   (`fs.inotify.max_user_watches`) is reached, it falls back to polling,
//!   with a notice naming the limit.
//! - **events** (macOS: FSEvents, through the `notify` crate; see
//!   [`events`]): one recursive watch on the root, whose events name the
//!   paths to look at again; when the platform says events were lost, the
//!   next refresh reads the whole tree, with a notice.
//! - **poll** (everywhere else, and the fall-back): every refresh asked for
//!   with [`Watched::rescan_due`] reads the whole tree and compares. Portable,
//!   and costs the tree.
//!
//! An ignore file that changes changes the rules: the next refresh reads
//! the whole tree again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::rules::{Rules, is_at_or_below, join, parent};
use crate::tree::{same_or_absent, stat_at};
use crate::v1::{EntryKind, ManifestEntry, WalkRules};

/// How a tree is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Kernel notifications per folder (Linux).
    Inotify,
    /// The platform's recursive file events (FSEvents on macOS).
    #[cfg(any(target_os = "macos", test))]
    Events,
    /// A walk of the whole tree at every refresh.
    Poll,
}

impl Method {
    /// Its name, as `WatchReady.method` and notices say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Inotify => "inotify",
            #[cfg(any(target_os = "macos", test))]
            Method::Events => "events",
            Method::Poll => "poll",
        }
    }

    /// The best this system offers.
    pub fn native() -> Method {
        if cfg!(any(target_os = "linux", target_os = "android")) { Method::Inotify } else { Method::elsewhere() }
    }

    /// The best a system without inotify offers: FSEvents on macOS.
    #[cfg(target_os = "macos")]
    fn elsewhere() -> Method {
        Method::Events
    }

    /// The best a system without inotify offers: walking.
    #[cfg(not(target_os = "macos"))]
    fn elsewhere() -> Method {
        Method::Poll
    }
}

/// How often a polled tree is walked again.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Why a tree cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The root is missing or not a folder.
    #[error("{root}: {source}")]
    Root {
        /// The root folder.
        root: String,
        /// The OS error.
        source: nix::Error,
    },
    /// The kernel's watch could not be set up.
    #[error("watching {root}: {source}")]
    Init {
        /// The root folder.
        root: String,
        /// The OS error.
        source: nix::Error,
    },
}

/// One path whose entry changed since the last refresh.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Relative path.
    pub path: Vec<u8>,
    /// What it was; `None`: it did not exist.
    pub before: Option<ManifestEntry>,
    /// What it is now; `None`: it no longer exists.
    pub after: Option<ManifestEntry>,
}

/// A watched tree: its manifest as of the last refresh, and what happened since.
pub struct Watched {
    root: PathBuf,
    /// The root folder, opened once (following the root path itself, which
    /// may be a `/proc/self/fd/N` link); everything below is opened from it.
    root_fd: OwnedFd,
    rules: Rules,
    /// Every included entry below the root, by relative path.
    manifest: BTreeMap<Vec<u8>, ManifestEntry>,
    source: Source,
    /// Paths to look at again.
    dirty: BTreeSet<Vec<u8>>,
    /// The whole tree must be read again (overflow, rules changed, polling).
    rescan: bool,
    notices: Vec<String>,
    last_walk: Instant,
}

enum Source {
    Inotify(Inotify),
    #[cfg(any(target_os = "macos", test))]
    Events(events::Events),
    Poll,
}

/// The inotify instance and which folder each watch is on.
struct Inotify {
    fd: nix::sys::inotify::Inotify,
    folders: HashMap<nix::sys::inotify::WatchDescriptor, Vec<u8>>,
    watches: HashMap<Vec<u8>, nix::sys::inotify::WatchDescriptor>,
}

impl Watched {
    /// Watches `root` (absolute) with `rules`, by `method`, reading the whole
    /// tree once.
    pub fn start(root: &Path, rules: &WalkRules, method: Method) -> Result<Watched, WatchError> {
        let root_error = |source| WatchError::Root { root: root.display().to_string(), source };
        let root_fd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(root_error)?;
        let source = match method {
            Method::Inotify => {
                Source::Inotify(Inotify::new().map_err(|source| WatchError::Init { root: root.display().to_string(), source })?)
            }
            // Started before the first read, as inotify's watches are armed.
            #[cfg(any(target_os = "macos", test))]
            Method::Events => {
                Source::Events(events::Events::start(root).map_err(|source| WatchError::Init { root: root.display().to_string(), source })?)
            }
            Method::Poll => Source::Poll,
        };
        let mut watched = Watched {
            root: root.to_path_buf(),
            root_fd,
            rules: Rules::new(root, rules),
            manifest: BTreeMap::new(),
            source,
            dirty: BTreeSet::new(),
            rescan: false,
            notices: Vec::new(),
            last_walk: Instant::now(),
        };
        watched.rules.load_folder(b"");
        let mut found = BTreeMap::new();
        watched.read_folder(b"", &mut found).map_err(root_error)?;
        watched.manifest = found;
        Ok(watched)
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How the tree is watched now (polling after a watch limit was hit).
    pub fn method(&self) -> Method {
        match self.source {
            Source::Inotify(_) => Method::Inotify,
            #[cfg(any(target_os = "macos", test))]
            Source::Events(_) => Method::Events,
            Source::Poll => Method::Poll,
        }
    }

    /// The manifest as of the last refresh.
    pub fn manifest(&self) -> &BTreeMap<Vec<u8>, ManifestEntry> {
        &self.manifest
    }

    /// The walk rules' matcher (which paths the tree holds).
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The descriptor that becomes readable when events wait (inotify, or
    /// the events' wake-up pipe); `None` when polling.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.source {
            Source::Inotify(inotify) => Some(inotify.fd.as_fd()),
            #[cfg(any(target_os = "macos", test))]
            Source::Events(events) => Some(events.fd()),
            Source::Poll => None,
        }
    }

    /// A duplicate of [`Watched::fd`], for an event loop to wait on.
    pub fn dup_fd(&self) -> Option<OwnedFd> {
        self.fd().and_then(|fd| fd.try_clone_to_owned().ok())
    }

    /// Reads the events waiting (without blocking); `true` when some path
    /// became dirty.
    pub fn take_events(&mut self) -> bool {
        #[cfg(any(target_os = "macos", test))]
        if let Source::Events(events) = &mut self.source {
            let taken = events.take();
            return self.take_paths(taken);
        }
        let Source::Inotify(inotify) = &mut self.source else { return false };
        let mut any = false;
        loop {
            let events = match inotify.fd.read_events() {
                Ok(events) if !events.is_empty() => events,
                Ok(_) | Err(nix::Error::EAGAIN) => break,
                Err(nix::Error::EINTR) => continue,
                Err(_) => {
                    self.rescan = true;
                    break;
                }
            };
            use nix::sys::inotify::AddWatchFlags as F;
            for event in events {
                if event.mask.contains(F::IN_Q_OVERFLOW) {
                    if !self.rescan {
                        self.notices.push(format!("the {} event queue overflowed: the whole tree is read again", Method::Inotify.as_str()));
                    }
                    self.rescan = true;
                    any = true;
                    continue;
                }
                if event.mask.contains(F::IN_IGNORED) {
                    if let Some(folder) = inotify.folders.remove(&event.wd)
                        && inotify.watches.get(&folder) == Some(&event.wd)
                    {
                        inotify.watches.remove(&folder);
                    }
                    continue;
                }
                let Some(folder) = inotify.folders.get(&event.wd) else { continue };
                let path = match &event.name {
                    Some(name) if !folder.is_empty() => [folder.as_slice(), b"/", name.as_bytes()].concat(),
                    Some(name) => name.as_bytes().to_vec(),
                    // The folder itself was deleted or moved: its parent's
                    // watch reports it by name.
                    None => continue,
                };
                if self.rules.is_ignore_file(&path) {
                    self.rescan = true;
                }
                self.dirty.insert(path);
                any = true;
            }
        }
        any
    }

    /// Marks what the platform's events named: each path below the root
    /// whose folder the manifest holds, or that came with its folder in the
    /// same events (a path inside a folder that is new is read with it; one
    /// inside an ignored folder is none of the tree's business).
    #[cfg(any(target_os = "macos", test))]
    fn take_paths(&mut self, taken: events::Taken) -> bool {
        let mut any = false;
        if taken.rescan {
            if !self.rescan {
                self.notices.push(format!("the {} lost some events: the whole tree is read again", Method::Events.as_str()));
            }
            self.rescan = true;
            any = true;
        }
        let named = &taken.paths;
        for path in named {
            let up = parent(path);
            let known = up.is_empty() || self.manifest.contains_key(up) || named.contains(up);
            if path.is_empty() || !known {
                continue;
            }
            if self.rules.is_ignore_file(path) {
                self.rescan = true;
            }
            self.dirty.insert(path.clone());
            any = true;
        }
        any
    }

    /// Whether a polled tree is due for its next walk.
    pub fn rescan_due(&self) -> bool {
        self.method() == Method::Poll && self.last_walk.elapsed() >= POLL_EVERY
    }

    /// Asks the next refresh to read the whole tree.
    pub fn force_rescan(&mut self) {
        self.rescan = true;
    }

    /// Marks `path` to be looked at again (something else changed it, or may have).
    pub fn mark(&mut self, path: &[u8]) {
        self.dirty.insert(path.to_vec());
    }

    /// Whether a refresh has anything to look at.
    pub fn is_dirty(&self) -> bool {
        self.rescan || !self.dirty.is_empty() || self.rescan_due()
    }

    /// What the user should be told (overflows, limits), once.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// Brings the manifest up to date and returns what changed, sorted by
    /// path (a folder before what is inside it).
    pub fn refresh(&mut self) -> Vec<Change> {
        self.take_events();
        if self.rescan || self.rescan_due() {
            return self.rescan_all();
        }
        let dirty = std::mem::take(&mut self.dirty);
        let mut changes = Vec::new();
        for path in dirty {
            self.refresh_path(&path, &mut changes);
        }
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        changes
    }

    /// Looks at `path` again, and at what it holds if it became a folder.
    fn refresh_path(&mut self, path: &[u8], changes: &mut Vec<Change>) {
        let up = parent(path);
        let parent_is_folder = up.is_empty() || self.manifest.get(up).is_some_and(|e| e.kind == EntryKind::EntryDirectory as i32);
        let now = if parent_is_folder { self.stat(path) } else { None };
        let now = now.filter(|e| self.rules.includes(path, e.kind == EntryKind::EntryDirectory as i32));
        let before = self.manifest.get(path).cloned();
        let was_folder = before.as_ref().is_some_and(|e| e.kind == EntryKind::EntryDirectory as i32);
        let is_folder = now.as_ref().is_some_and(|e| e.kind == EntryKind::EntryDirectory as i32);
        if was_folder && !is_folder {
            self.drop_below(path, changes);
        }
        if !same_or_absent(before.as_ref(), now.as_ref()) {
            changes.push(Change { path: path.to_vec(), before: before.clone(), after: now.clone() });
        }
        // The manifest keeps the exact entry (a folder's mtime too).
        match &now {
            Some(entry) => {
                self.manifest.insert(path.to_vec(), entry.clone());
            }
            None => {
                self.manifest.remove(path);
            }
        }
        if is_folder && !was_folder {
            self.rules.load_folder(path);
            let mut found = BTreeMap::new();
            let _ = self.read_folder(path, &mut found);
            for (p, entry) in found {
                let before = self.manifest.insert(p.clone(), entry.clone());
                if !same_or_absent(before.as_ref(), Some(&entry)) {
                    changes.push(Change { path: p, before, after: Some(entry) });
                }
            }
        }
    }

    /// Removes everything below the folder `path` from the manifest (it is
    /// gone, or no longer a folder), reporting each as deleted.
    fn drop_below(&mut self, path: &[u8], changes: &mut Vec<Change>) {
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        let below: Vec<Vec<u8>> =
            self.manifest.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
        for key in below {
            if let Some(entry) = self.manifest.remove(&key) {
                changes.push(Change { path: key, before: Some(entry), after: None });
            }
        }
        self.rules.forget_below(path);
        if let Source::Inotify(inotify) = &mut self.source {
            inotify.forget_below(path);
        }
    }

    /// Reads the whole tree again and compares it with the manifest.
    fn rescan_all(&mut self) -> Vec<Change> {
        self.rescan = false;
        self.dirty.clear();
        self.last_walk = Instant::now();
        self.rules.forget_below(b"");
        self.rules.load_folder(b"");
        let mut found = BTreeMap::new();
        if let Err(e) = self.read_folder(b"", &mut found) {
            // The root itself cannot be read: never take that for an empty tree.
            self.notices.push(format!("the root folder cannot be read ({e}): nothing changed is reported until it can"));
            self.rescan = true;
            return Vec::new();
        }
        let old = std::mem::replace(&mut self.manifest, found);
        let mut changes = Vec::new();
        let mut theirs = old.into_iter().peekable();
        for (path, entry) in &self.manifest {
            while let Some((gone, before)) = theirs.next_if(|(p, _)| p < path) {
                changes.push(Change { path: gone, before: Some(before), after: None });
            }
            let before = theirs.next_if(|(p, _)| p == path).map(|(_, e)| e);
            if !same_or_absent(before.as_ref(), Some(entry)) {
                changes.push(Change { path: path.clone(), before, after: Some(entry.clone()) });
            }
        }
        changes.extend(theirs.map(|(gone, before)| Change { path: gone, before: Some(before), after: None }));
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        changes
    }

    /// The entry at `path` now, not following symlinks.
    fn stat(&self, path: &[u8]) -> Option<ManifestEntry> {
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
        let fd = self.open_folder(parent(path)).ok()?;
        stat_at(&fd, name, path.to_vec()).ok().flatten()
    }

    /// Opens the folder `rel` below the root (the root for an empty `rel`),
    /// its last name not followed if it is a symlink.
    fn open_folder(&self, rel: &[u8]) -> nix::Result<OwnedFd> {
        if rel.is_empty() {
            return nix::fcntl::openat(&self.root_fd, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty());
        }
        nix::fcntl::openat(&self.root_fd, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty())
    }

    /// Reads the folder `rel` and everything included below it into `found`,
    /// arming a watch on each folder before reading it. Fails only when
    /// `rel` itself cannot be read (a folder below that vanished meanwhile
    /// is left to its parent's watch).
    fn read_folder(&mut self, rel: &[u8], found: &mut BTreeMap<Vec<u8>, ManifestEntry>) -> nix::Result<()> {
        let mut stack = vec![rel.to_vec()];
        while let Some(folder) = stack.pop() {
            self.arm(&folder);
            let opened = self.open_folder(&folder).and_then(nix::dir::Dir::from_fd);
            let mut dir = match opened {
                Ok(dir) => dir,
                Err(e) if folder == rel => return Err(e),
                Err(_) => continue,
            };
            let mut names = Vec::new();
            for item in dir.iter().flatten() {
                let name = item.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(name.to_vec());
                }
            }
            for name in names {
                let path = if folder.is_empty() { name.clone() } else { [folder.as_slice(), b"/", &name].concat() };
                let Ok(Some(entry)) = stat_at(&dir, &name, path.clone()) else { continue };
                let is_dir = entry.kind == EntryKind::EntryDirectory as i32;
                if !self.rules.includes(&path, is_dir) {
                    continue;
                }
                if is_dir {
                    self.rules.load_folder(&path);
                    stack.push(path.clone());
                }
                found.insert(path, entry);
            }
        }
        Ok(())
    }

    /// Arms the watch of the folder `rel`; past the watch limit, falls back
    /// to polling with a notice.
    fn arm(&mut self, rel: &[u8]) {
        let Source::Inotify(inotify) = &mut self.source else { return };
        match inotify.add(&self.root, rel) {
            Ok(()) => {}
            Err(nix::Error::ENOSPC) => {
                let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").unwrap_or_default();
                self.notices.push(format!(
                    "the inotify watch limit (fs.inotify.max_user_watches = {}) is reached: changes are now found by reading the whole tree every {} s; raise the limit (sysctl fs.inotify.max_user_watches=524288) for prompt, cheap syncs",
                    limit.trim(),
                    POLL_EVERY.as_secs()
                ));
                self.source = Source::Poll;
            }
            // Gone meanwhile: its parent's watch reports that.
            Err(_) => {}
        }
    }
}

impl Inotify {
    fn new() -> nix::Result<Inotify> {
        use nix::sys::inotify::{InitFlags, Inotify as Fd};
        let fd = Fd::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        Ok(Inotify { fd, folders: HashMap::new(), watches: HashMap::new() })
    }

    fn add(&mut self, root: &Path, rel: &[u8]) -> nix::Result<()> {
        use nix::sys::inotify::AddWatchFlags as F;
        let mask = F::IN_CREATE
            | F::IN_DELETE
            | F::IN_MODIFY
            | F::IN_CLOSE_WRITE
            | F::IN_ATTRIB
            | F::IN_MOVED_FROM
            | F::IN_MOVED_TO
            | F::IN_DELETE_SELF
            | F::IN_MOVE_SELF
            | F::IN_ONLYDIR;
        // Below the root, a symlink is never watched in place of a folder;
        // the root's own path may be a `/proc/self/fd/N` link, followed.
        let mask = if rel.is_empty() { mask } else { mask | F::IN_DONT_FOLLOW };
        let wd = self.fd.add_watch(&join(root, rel), mask)?;
        // A folder moved within the tree keeps its watch: it now belongs to
        // the new path.
        if let Some(old) = self.folders.insert(wd, rel.to_vec())
            && old != rel
            && self.watches.get(&old) == Some(&wd)
        {
            self.watches.remove(&old);
        }
        self.watches.insert(rel.to_vec(), wd);
        Ok(())
    }

    /// Stops watching the folders at and below `rel`, unless their watch
    /// now serves another path (the folder was moved within the tree).
    fn forget_below(&mut self, rel: &[u8]) {
        let gone: Vec<Vec<u8>> = self.watches.keys().filter(|k| is_at_or_below(k, rel)).cloned().collect();
        for folder in gone {
            let Some(wd) = self.watches.remove(&folder) else { continue };
            if self.folders.get(&wd) == Some(&folder) {
                self.folders.remove(&wd);
                let _ = self.fd.rm_watch(wd);
            }
        }
    }
}

#[cfg(any(target_os = "macos", test))]
pub mod events;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::tree::walk;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn paths(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| String::from_utf8_lossy(&c.path).into_owned()).collect()
    }

    /// How the manifest differs from what a fresh walk finds, if it does.
    fn differs_from_walk(watched: &Watched) -> Option<String> {
        let walked: BTreeMap<Vec<u8>, ManifestEntry> =
            walk(watched.root(), &WalkRules::default()).unwrap().entries.into_iter().map(|e| (e.path.clone(), e)).collect();
        let ours: Vec<_> = watched.manifest().keys().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        let theirs: Vec<_> = walked.keys().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        if ours != theirs {
            return Some(format!("manifest {ours:?}, walk {theirs:?}"));
        }
        watched
            .manifest()
            .iter()
            .find(|(path, entry)| !crate::tree::same(entry, &walked[*path]))
            .map(|(path, _)| format!("{:?} differs", String::from_utf8_lossy(path)))
    }

    /// After any refresh the manifest is what a fresh walk finds.
    fn assert_matches_walk(watched: &Watched) {
        if let Some(why) = differs_from_walk(watched) {
            panic!("{why}");
        }
    }

    /// Refreshes until the manifest is what a walk finds, waiting on the
    /// watch's descriptor in between (the platform's events arrive on the
    /// watcher's thread, some time after the change), within a deadline;
    /// every path reported meanwhile.
    fn refresh_until_walked(watched: &mut Watched) -> BTreeSet<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = BTreeSet::new();
        loop {
            seen.extend(watched.refresh().iter().map(|c| String::from_utf8_lossy(&c.path).into_owned()));
            let Some(why) = differs_from_walk(watched) else { return seen };
            assert!(Instant::now() < deadline, "the events never brought the manifest to the walk's: {why}; seen {seen:?}");
            let fd = watched.fd().unwrap();
            let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        }
    }

    #[test]
    fn the_platforms_recursive_events_find_changes_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        write(&root, "a/b/c.txt", "c");
        write(&root, ".gitignore", "ignored/\n");
        write(&root, "ignored/big", "x");
        let mut watched = Watched::start(&root, &WalkRules::default(), Method::Events).unwrap();
        assert_eq!((watched.method(), watched.method().as_str()), (Method::Events, "events"));
        assert!(watched.refresh().is_empty(), "a quiet tree changed");

        write(&root, "a/new.txt", "n");
        write(&root, "a/b/c.txt", "changed");
        write(&root, "fresh/deep/er/f", "f");
        write(&root, "ignored/other", "x");
        std::fs::rename(root.join("a/b"), root.join("moved")).unwrap();
        let seen = refresh_until_walked(&mut watched);
        for path in ["a/b", "a/b/c.txt", "a/new.txt", "fresh", "fresh/deep/er/f", "moved", "moved/c.txt"] {
            assert!(seen.contains(path), "{path} not reported: {seen:?}");
        }
        assert!(!seen.iter().any(|p| p.starts_with("ignored")), "{seen:?}");

        // Inside the moved folder, edits are still seen, under its new name.
        write(&root, "moved/c.txt", "again, longer");
        std::fs::remove_dir_all(root.join("fresh")).unwrap();
        let seen = refresh_until_walked(&mut watched);
        assert!(seen.contains("moved/c.txt") && seen.contains("fresh/deep/er/f"), "{seen:?}");

        // A changed ignore file changes what the tree holds.
        write(&root, ".gitignore", "");
        let seen = refresh_until_walked(&mut watched);
        assert!(seen.contains("ignored/big") && seen.contains("ignored/other"), "{seen:?}");
    }

    #[test]
    fn changes_are_found_by_what_changed() {
        for method in [Method::Inotify, Method::Poll] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("p");
            write(&root, "a/b/c.txt", "c");
            write(&root, ".gitignore", "ignored/\n");
            write(&root, "ignored/big", "x");
            let mut watched = Watched::start(&root, &WalkRules::default(), method).unwrap();
            assert_eq!(watched.method(), method);
            assert!(!watched.manifest().contains_key(&b"ignored/big"[..]));
            if method == Method::Poll {
                watched.force_rescan();
            }
            assert!(watched.refresh().is_empty(), "{method:?}: a quiet tree changed");

            write(&root, "a/new.txt", "n");
            write(&root, "a/b/c.txt", "changed");
            std::fs::set_permissions(root.join("a/b"), std::fs::Permissions::from_mode(0o700)).unwrap();
            write(&root, "fresh/deep/er/f", "f");
            write(&root, "ignored/other", "x");
            std::fs::rename(root.join("a/b"), root.join("moved")).unwrap();
            if method == Method::Poll {
                watched.force_rescan();
            } else {
                assert!(watched.take_events());
            }
            let changes = watched.refresh();
            assert_eq!(
                paths(&changes),
                ["a/b", "a/b/c.txt", "a/new.txt", "fresh", "fresh/deep", "fresh/deep/er", "fresh/deep/er/f", "moved", "moved/c.txt"],
                "{method:?}"
            );
            assert_matches_walk(&watched);

            // Inside the moved folder, edits are still seen, under its new name.
            write(&root, "moved/c.txt", "again, longer");
            std::fs::remove_dir_all(root.join("fresh")).unwrap();
            if method == Method::Poll {
                watched.force_rescan();
            }
            let changes = watched.refresh();
            assert_eq!(paths(&changes), ["fresh", "fresh/deep", "fresh/deep/er", "fresh/deep/er/f", "moved/c.txt"], "{method:?}");
            assert!(changes[..4].iter().all(|c| c.after.is_none()));
            assert_matches_walk(&watched);

            // A changed ignore file changes what the tree holds.
            write(&root, ".gitignore", "");
            if method == Method::Poll {
                watched.force_rescan();
            }
            let changes = watched.refresh();
            assert_eq!(paths(&changes), [".gitignore", "ignored", "ignored/big", "ignored/other"], "{method:?}");
            assert_matches_walk(&watched);
        }
    }
}
