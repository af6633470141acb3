//! Repositories the guest makes inside a shared project, quarantined as
//! they appear: `hutch git-watch` (hidden), a daemon of each guarded VM.
//!
//! The guard covers every `.git` that exists when the VM starts. A `.git`
//! the guest makes later (`git init sub`, a clone, a planted folder or
//! `gitdir:` file) is a repository host git would use: `git add .` takes it
//! as a submodule ("adding embedded git repository"), and from then on
//! every `git status` runs git inside it, with its configuration
//! (`core.fsmonitor`…). So the host watches every folder of the project
//! (inotify) and renames each new `.git` it did not guard to
//! `.git.hutch-quarantine` (then `-2`, `-3`…) at once: nothing is lost, git
//! no longer sees a repository there, and the user is told (the audit log;
//! the next hutch command's stderr) where it is and how to look at it. The
//! window between the guest's rename into place and hutch's is the time of
//! one inotify event; a submodule added in that window is harmless once the
//! `.git` is gone (an unpopulated submodule runs nothing).
//!
//! A repository the user makes in the project on the host while a VM runs
//! is quarantined the same way (hutch cannot tell who made it): the notice
//! says how to take it back. Heavy dirs (VM-local in the guest) and the
//! guarded `.git`s themselves are not watched. Past the kernel's watch limit
//! (`fs.inotify.max_user_watches`), or the walk's bounds, hutch says so once,
//! and the folders it could not watch are only looked at when the guest's
//! commits are taken (`super::nested`).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::GitError;
use super::guard::Guard;
use super::report::{Refused, RepoReport};
use crate::daemon::Daemon;
use crate::state::{StateDir, VmName};

/// The daemon's name (its log, `git-watch.log`, and pid file).
pub const NAME: &str = "git-watch";
/// What it prints once it watches everything.
const READY: &str = "watching";
/// Notices waiting for the next hutch command, in the VM's folder.
const NOTICES_FILE: &str = "git/notices";
/// Folders watched at most (the kernel's limit is usually lower).
const MAX_WATCHED: usize = 500_000;
/// Renames tried per quarantined `.git` (`.git.hutch-quarantine-N`).
const MAX_SUFFIX: u32 = 1000;
/// How long `up` waits for the daemon's first walk.
const START_WAIT: Duration = Duration::from_secs(60);

/// The watcher of the VM whose folder is `vm_dir`.
pub fn daemon(vm_dir: &Path) -> Daemon {
    Daemon::new(vm_dir, NAME)
}

/// Starts the VM's watcher if it has a guard and none runs; waits until it
/// watches the project.
pub fn ensure(state: &StateDir, name: &VmName) -> Result<(), GitError> {
    let dir = state.vm_dir(name);
    if !Guard::path(&dir).exists() {
        stop(&dir);
        return Ok(());
    }
    let watcher = daemon(&dir);
    if watcher.running() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(GitError::io("finding hutch's own program", Path::new("/proc/self/exe")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args([NAME, "--name", name.as_str()]).env("HUTCH_STATE_DIR", state.root());
    let started = watcher.spawn_claiming(cmd).and_then(|spawned| spawned.wait_until(START_WAIT, |news| news.lines().any(|l| l == READY)));
    started.map_err(|e| {
        watcher.terminate(Duration::from_secs(2));
        GitError::Unguardable {
            path: dir.join(format!("{NAME}.log")),
            why: format!("(the watcher of new repositories) did not start: {e}"),
        }
    })
}

/// Stops the VM's watcher, if it runs.
pub fn stop(vm_dir: &Path) {
    daemon(vm_dir).terminate(Duration::from_secs(2));
}

/// `hutch git-watch --name NAME`: the daemon itself. Returns only when it
/// cannot watch (or another watcher runs).
pub fn run(state: &StateDir, name: &VmName) -> Result<u8, GitError> {
    let dir = state.vm_dir(name);
    let Some(_claim) = daemon(&dir).claim().map_err(GitError::io("locking", &dir.join(format!("{NAME}.log"))))? else {
        return Ok(0);
    };
    let guard = Guard::load(&dir)?.ok_or_else(|| GitError::BadGuardFile { path: Guard::path(&dir), why: "missing".into() })?;
    let heavy = state.load(name).map(|r| r.heavy_dirs).unwrap_or_default();
    let mut watcher = Watcher::new(guard, heavy, dir)?;
    watcher.watch_all();
    println!("{READY}");
    let _ = std::io::stdout().flush();
    loop {
        watcher.step(None)?;
    }
}

/// Prints (and forgets) what the watcher noticed since the last hutch
/// command: one `hutch: git:` line each. Costs one failed rename when there
/// is nothing.
pub fn tell_notices(vm_dir: &Path) {
    let path = vm_dir.join(NOTICES_FILE);
    let taken = path.with_extension(format!("{}", std::process::id()));
    if std::fs::rename(&path, &taken).is_err() {
        return;
    }
    if let Ok(text) = std::fs::read_to_string(&taken) {
        for line in text.lines() {
            eprintln!("hutch: git: {line}");
        }
    }
    let _ = std::fs::remove_file(&taken);
}

/// The inotify state: one watch per folder of the project.
pub struct Watcher {
    inotify: Inotify,
    watched: HashMap<WatchDescriptor, PathBuf>,
    known: BTreeSet<PathBuf>,
    heavy: Vec<String>,
    workspace: PathBuf,
    vm_dir: PathBuf,
    /// The VM's audit log.
    log: Option<crate::audit::Log>,
    /// Said once: some folders are not watched.
    told_incomplete: bool,
}

impl Watcher {
    /// A watcher of `guard`'s workspace (nothing watched yet).
    pub fn new(guard: Guard, heavy: Vec<String>, vm_dir: PathBuf) -> Result<Watcher, GitError> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| GitError::io("starting inotify", Path::new("/proc/sys/fs/inotify"))(e.into()))?;
        let known = guard.known_git_entries();
        let log = crate::audit::Log::for_vm_dir(&vm_dir);
        Ok(Watcher { inotify, watched: HashMap::new(), known, heavy, workspace: guard.workspace, vm_dir, log, told_incomplete: false })
    }

    /// Watches every folder of the project, quarantining what is there already.
    pub fn watch_all(&mut self) {
        let workspace = self.workspace.clone();
        self.watch_tree(&workspace);
    }

    /// Waits up to `timeout` (`None`: for ever) for events and handles them.
    pub fn step(&mut self, timeout: Option<Duration>) -> Result<(), GitError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let wait = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(GitError::io("waiting for inotify", Path::new("/proc/sys/fs/inotify"))(e.into())),
        }
        let events = match self.inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EAGAIN) => return Ok(()),
            Err(e) => return Err(GitError::io("reading inotify", Path::new("/proc/sys/fs/inotify"))(e.into())),
        };
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                self.watch_all();
                continue;
            }
            if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                self.watched.remove(&event.wd);
                continue;
            }
            let (Some(dir), Some(name)) = (self.watched.get(&event.wd).cloned(), event.name) else { continue };
            let path = dir.join(&name);
            if name == ".git" {
                self.quarantine(&path);
            } else if event.mask.contains(AddWatchFlags::IN_ISDIR) {
                self.watch_tree(&path);
            }
        }
        Ok(())
    }

    /// Watches `dir` and every folder below it (never through a symlink),
    /// quarantining any `.git` the guard does not know.
    fn watch_tree(&mut self, dir: &Path) {
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            if self.known.contains(&dir) && dir.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if self.watched.len() >= MAX_WATCHED {
                self.incomplete("more folders than hutch watches");
                return;
            }
            let mask = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR | AddWatchFlags::IN_DONT_FOLLOW;
            match self.inotify.add_watch(&dir, mask) {
                Ok(wd) => {
                    self.watched.insert(wd, dir.clone());
                }
                Err(nix::errno::Errno::ENOSPC) => {
                    self.incomplete("the kernel's watch limit (fs.inotify.max_user_watches) is reached");
                    return;
                }
                Err(_) => continue,
            }
            // What appeared before the watch was in place.
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                if name == ".git" {
                    self.quarantine(&path);
                } else if entry.file_type().is_ok_and(|t| t.is_dir()) && !self.heavy.iter().any(|h| name == h.as_str()) {
                    pending.push(path);
                }
            }
        }
    }

    /// Renames a `.git` the guard did not put there out of git's way.
    fn quarantine(&mut self, path: &Path) {
        if self.known.contains(path) || path.symlink_metadata().is_err() {
            return;
        }
        let Some(parent) = path.parent() else { return };
        for n in 1..=MAX_SUFFIX {
            let name = if n == 1 { ".git.hutch-quarantine".to_owned() } else { format!(".git.hutch-quarantine-{n}") };
            let target = parent.join(&name);
            let cwd = nix::fcntl::AT_FDCWD;
            match nix::fcntl::renameat2(cwd, path, cwd, &target, nix::fcntl::RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => {
                    let rel = |p: &Path| {
                        crate::untrusted::text::shown_bytes(p.strip_prefix(&self.workspace).unwrap_or(p).as_os_str().as_encoded_bytes())
                    };
                    let why = format!(
                        "a repository appeared here while the VM ran (made by the guest, or on this host): git on this host would run its hooks and configuration; quarantined as {} (look at its config and hooks before renaming it back)",
                        rel(&target)
                    );
                    self.notice(&rel(path), why);
                    return;
                }
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(_) => return,
            }
        }
    }

    fn incomplete(&mut self, why: &str) {
        if !self.told_incomplete {
            self.told_incomplete = true;
            let note = format!("{why}: a repository the guest makes in a folder not watched is only named when its commits are taken");
            self.notice(&crate::untrusted::text::shown_bytes(self.workspace.as_os_str().as_encoded_bytes()), note);
        }
    }

    /// Writes a notice into the audit log and for the next hutch command.
    fn notice(&self, what: &str, why: String) {
        let mut report = RepoReport::new(&self.workspace);
        report.refused.push(Refused { name: what.to_owned(), why: why.clone(), kept: None });
        if let Some(log) = &self.log {
            log.append(crate::audit::What::Git(report));
        }
        let path = self.vm_dir.join(NOTICES_FILE);
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            let _ = writeln!(file, "refused {what}: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_dot_git_anywhere_is_quarantined_at_once_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let (ws, vm) = (dir.path().join("ws"), dir.path().join("vm"));
        std::fs::create_dir_all(ws.join("known")).unwrap();
        std::fs::create_dir_all(ws.join("node_modules")).unwrap();
        std::fs::create_dir_all(vm.join("git")).unwrap();
        std::fs::create_dir(ws.join("known/.git")).unwrap();
        std::fs::create_dir_all(ws.join("early/.git")).unwrap();
        std::fs::create_dir_all(ws.join("pinned")).unwrap();
        let mounts = vec![
            super::super::guard::Mount::Pin { path: ws.join("known") },
            super::super::guard::Mount::ReadOnly { path: ws.join("known/.git") },
            super::super::guard::Mount::Pin { path: ws.join("pinned") },
        ];
        let guard = Guard { workspace: ws.clone(), mounts, ..Guard::default() };
        let mut watcher = Watcher::new(guard, vec!["node_modules".into()], vm.clone()).unwrap();
        let audit = dir.path().join("audit.jsonl");
        watcher.log = Some(crate::audit::Log::at(audit.clone(), &crate::state::VmName::new("web").unwrap()));
        watcher.watch_all();
        assert!(ws.join("early/.git.hutch-quarantine").is_dir(), "one made before the watch started");

        // A planted repository renamed into place, a `gitdir:` file, one in a
        // new deep folder; a second one at a quarantined place.
        std::fs::create_dir_all(ws.join("stash/x/objects")).unwrap();
        std::fs::create_dir_all(ws.join("a")).unwrap();
        std::fs::rename(ws.join("stash/x"), ws.join("a/.git")).unwrap();
        std::fs::write(ws.join(".git"), "gitdir: stash\n").unwrap();
        std::fs::create_dir_all(ws.join("b/c/d/.git")).unwrap();
        std::fs::create_dir_all(ws.join("early/.git")).unwrap();
        std::fs::create_dir_all(ws.join("node_modules/dep/.git")).unwrap();
        std::fs::create_dir_all(ws.join("pinned/.git")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let done = |ws: &Path| {
            ws.join("a/.git.hutch-quarantine/objects").is_dir()
                && ws.join(".git.hutch-quarantine").is_file()
                && ws.join("b/c/d/.git.hutch-quarantine").is_dir()
                && ws.join("early/.git.hutch-quarantine-2").is_dir()
                && ws.join("pinned/.git.hutch-quarantine").is_dir()
        };
        while !done(&ws) {
            assert!(std::time::Instant::now() < deadline, "not quarantined: {:?}", std::fs::read_dir(&ws).unwrap().collect::<Vec<_>>());
            watcher.step(Some(Duration::from_millis(200))).unwrap();
        }
        assert!(ws.join("known/.git").is_dir(), "a guarded .git stays");
        assert!(ws.join("node_modules/dep/.git").is_dir(), "heavy dirs are the guest's own disk");
        tell_notices(&vm);
        let audit = std::fs::read_to_string(&audit).unwrap();
        assert_eq!(audit.lines().count(), 6, "{audit}");
        assert!(audit.contains("quarantined as b/c/d/.git.hutch-quarantine"), "{audit}");
        assert!(!vm.join(NOTICES_FILE).exists(), "told once");
    }
}
