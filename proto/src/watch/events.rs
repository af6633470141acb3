//! A tree watched through the platform's recursive file events (`notify`:
//! FSEvents on macOS), for [`super::Method::Events`].
//!
//! The events arrive on the watcher's own thread; it adds their paths to a
//! shared set and writes a byte to a pipe, whose read end is what an event
//! loop waits on, as it waits on an inotify descriptor. Only paths travel:
//! [`super::Watched::refresh`] looks at each again, as for inotify, so an
//! event's kind never matters and coalesced or reordered events lose nothing.
//! When the platform says events were dropped (FSEvents' "must scan
//! subdirectories"), or more paths wait than [`MAX_PENDING`], the next
//! refresh reads the whole tree.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::fcntl::OFlag;
use notify::Watcher as _;

/// Paths held between two refreshes before the next one reads the tree
/// instead (bounded memory, whatever the tree does).
pub const MAX_PENDING: usize = 100_000;

/// What the watcher's thread hands over.
#[derive(Default)]
struct Pending {
    paths: Vec<PathBuf>,
    /// Events were lost, or too many waited: read the whole tree.
    rescan: bool,
}

impl Pending {
    /// Takes in what the watcher reported.
    fn add(&mut self, event: notify::Result<notify::Event>) {
        match event {
            Ok(event) if event.need_rescan() || self.paths.len() + event.paths.len() > MAX_PENDING => {
                self.rescan = true;
                self.paths = Vec::new();
            }
            Ok(event) if !self.rescan => self.paths.extend(event.paths),
            Ok(_) => {}
            Err(_) => {
                self.rescan = true;
                self.paths = Vec::new();
            }
        }
    }
}

/// The watcher, and the read end of its wake-up pipe.
pub struct Events {
    _watcher: notify::RecommendedWatcher,
    pending: Arc<Mutex<Pending>>,
    wake: OwnedFd,
    /// The root as given, and as the platform may name it (FSEvents
    /// reports paths with symlinks resolved: `/private/tmp` for `/tmp`).
    roots: Vec<PathBuf>,
}

/// What [`Events::take`] found.
pub struct Taken {
    /// Paths below the root that changed, relative to it.
    pub paths: BTreeSet<Vec<u8>>,
    /// Read the whole tree.
    pub rescan: bool,
}

/// A `notify` error as the OS error it stands for.
fn os_error(e: notify::Error) -> nix::Error {
    match e.kind {
        notify::ErrorKind::Io(io) => io.raw_os_error().map_or(nix::Error::EIO, nix::Error::from_raw),
        notify::ErrorKind::MaxFilesWatch => nix::Error::ENOSPC,
        notify::ErrorKind::PathNotFound => nix::Error::ENOENT,
        _ => nix::Error::EIO,
    }
}

impl Events {
    /// Watches `root` and everything below it.
    pub fn start(root: &Path) -> Result<Events, nix::Error> {
        let (wake, signal) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let shared = pending.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            shared.lock().unwrap_or_else(PoisonError::into_inner).add(event);
            // A full pipe already wakes the reader.
            let _ = nix::unistd::write(&signal, &[1]);
        };
        let mut watcher = notify::recommended_watcher(handler).map_err(os_error)?;
        watcher.watch(root, notify::RecursiveMode::Recursive).map_err(os_error)?;
        let mut roots = vec![root.to_path_buf()];
        roots.extend(std::fs::canonicalize(root).ok().filter(|c| c != root));
        Ok(Events { _watcher: watcher, pending, wake, roots })
    }

    /// The descriptor that becomes readable when events wait.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Takes what arrived since the last call (without blocking).
    pub fn take(&mut self) -> Taken {
        let mut buf = [0u8; 256];
        while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let paths = taken.paths.iter().filter_map(|path| self.relative(path)).collect();
        Taken { paths, rescan: taken.rescan }
    }

    /// `path` relative to the root (empty: the root itself); `None` when it
    /// is not below it.
    fn relative(&self, path: &Path) -> Option<Vec<u8>> {
        self.roots.iter().find_map(|root| path.strip_prefix(root).ok()).map(|rel| rel.as_os_str().as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{EventKind, Flag};

    use super::*;

    fn event(paths: &[&str]) -> notify::Event {
        paths.iter().fold(notify::Event::new(EventKind::Any), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn lost_events_or_too_many_paths_ask_for_a_whole_read_and_hold_nothing() {
        let mut pending = Pending::default();
        pending.add(Ok(event(&["/r/a", "/r/b"])));
        assert_eq!((pending.paths.len(), pending.rescan), (2, false));
        pending.add(Ok(event(&["/r/c"]).set_flag(Flag::Rescan)));
        assert!(pending.rescan && pending.paths.is_empty());
        // Once a whole read is due, paths are not kept.
        pending.add(Ok(event(&["/r/d"])));
        assert!(pending.paths.is_empty());

        let mut pending = Pending::default();
        let many: Vec<String> = (0..MAX_PENDING).map(|i| format!("/r/{i}")).collect();
        pending.add(Ok(many.iter().fold(notify::Event::new(EventKind::Any), |e, p| e.add_path(PathBuf::from(p)))));
        assert_eq!((pending.paths.len(), pending.rescan), (MAX_PENDING, false));
        pending.add(Ok(event(&["/r/one-more"])));
        assert!(pending.rescan && pending.paths.is_empty());

        let mut pending = Pending::default();
        pending.add(Err(notify::Error::generic("the stream failed")));
        assert!(pending.rescan);
    }

    #[test]
    fn paths_are_made_relative_to_the_root_as_given_or_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let events = Events::start(&link).unwrap();
        assert_eq!(events.relative(&link.join("a/b")), Some(b"a/b".to_vec()));
        assert_eq!(events.relative(&real.join("a")), Some(b"a".to_vec()));
        assert_eq!(events.relative(&real), Some(Vec::new()));
        assert_eq!(events.relative(&dir.path().join("elsewhere")), None);
    }
}
