//! What of a shared project the host serves read-only, decided at every VM
//! start: the guard's plan, written to the VM's `git/guard.json` for the
//! namespace helper (the mounts), `Prepare` (the repositories) and the
//! fetch-back (where each repository is, and what HEAD was).
//!
//! Three kinds of `.git` make host git run code, and each is guarded:
//!
//! - **a repository's own `.git`** (the project's, and every nested one a
//!   bounded walk finds): replaced by a read-only [`view`](super::view);
//! - **the `.git` entry of each submodule** the index names (a gitlink): git
//!   on the host recurses into a populated submodule (`git status` runs
//!   `git status` there, with that repository's config), so the guest must
//!   neither replace `sub/.git` nor create one in an unpopulated or missing
//!   `sub/`, nor move `sub` (or a folder above it) aside and make a new one
//!   there. The folders leading to a gitlink are *pinned* (bound onto
//!   themselves: the kernel refuses to rename or remove a mount point), its
//!   `.git` file is read-only, and an unpopulated (or missing, then created
//!   and later removed again) submodule folder is read-only as a whole;
//! - **a `.git` the guest creates where the host has none**: at the
//!   project's root, an empty read-only `.git` (created, and removed again
//!   when the VM stops, as heavy dirs' mount points are). Nested ones the
//!   guest makes elsewhere are named when its commits are taken
//!   ([`super::nested`]).
//!
//! A `.git` that is a symlink, or a gitlink that is not a folder, is a shape
//! hutch cannot guard: the VM does not start (the error names the path and
//! the ways out).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GitError;
use super::host_git::Repo;
use super::view::{self, Head};
use crate::state::BackendKind;

/// The plan's file in the VM's state folder.
pub const GUARD_FILE: &str = "git/guard.json";
/// Where the views go in the VM's state folder.
const VIEWS_DIR: &str = "git/views";
/// How deep the walk for nested repositories goes.
const NESTED_DEPTH: usize = 5;
/// Folders the walk looks at, at most (huge trees).
const NESTED_MAX_DIRS: usize = 20_000;
/// Submodule gitdirs per repository, at most.
const MAX_MODULES: usize = 256;
/// What to do instead, when the guard cannot be had (Tart, Lima).
pub const BACKEND_ALTERNATIVES: &str = "use --ro (the guest works on a copy and the host's files stay as they are), or --sync where available (a copy kept in step, applied by the host with its checks), or --unguarded-git (or `unguarded_git = true` in ~/.config/hutch/config.toml) to share .git writable anyway, knowing the guest can then run code on this host through git";

/// A mount the namespace helper makes, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Mount {
    /// Bind a folder onto itself, so it can be neither renamed nor removed.
    Pin {
        /// The folder.
        path: PathBuf,
    },
    /// Bind a file or folder onto itself, read-only.
    ReadOnly {
        /// The file or folder.
        path: PathBuf,
    },
    /// Bind `source` (with what is mounted below it) onto `target`, read-only.
    Bind {
        /// What to show.
        source: PathBuf,
        /// Where.
        target: PathBuf,
    },
}

/// A submodule's gitdir inside a guarded repository's `.git`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Its path below `.git` (`modules/lib`).
    pub rel: String,
    /// The host gitdir.
    pub gitdir: PathBuf,
    /// Its worktree.
    pub worktree: PathBuf,
    /// HEAD when the view was made.
    pub head: Head,
}

/// A repository the guest gets a VM-local gitdir for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardedRepo {
    /// Its worktree (the same path in the guest).
    pub worktree: PathBuf,
    /// The host's gitdir (`<worktree>/.git`); `None` where the host has no
    /// repository (the guest gets an empty gitdir, nothing comes back).
    pub gitdir: Option<PathBuf>,
    /// "sha1" or "sha256".
    #[serde(default)]
    pub object_format: String,
    /// The host user's `user.name` there.
    #[serde(default)]
    pub user_name: String,
    /// The host user's `user.email` there.
    #[serde(default)]
    pub user_email: String,
    /// HEAD when the view was made.
    #[serde(default)]
    pub head: Head,
    /// Its submodules' gitdirs.
    #[serde(default)]
    pub modules: Vec<Module>,
}

/// The plan for one VM start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    /// The shared workspace.
    pub workspace: PathBuf,
    /// Repositories the guest gets a gitdir for.
    pub repos: Vec<GuardedRepo>,
    /// What the namespace mounts, in order.
    pub mounts: Vec<Mount>,
    /// Folders hutch created in the project (deepest first), removed when
    /// the VM stops if still empty.
    pub created: Vec<PathBuf>,
    /// What the user should know (a `.git` file the guest gets no gitdir for…).
    pub notes: Vec<String>,
}

impl Guard {
    /// The guard file of the VM whose folder is `vm_dir`.
    pub fn path(vm_dir: &Path) -> PathBuf {
        vm_dir.join(GUARD_FILE)
    }

    /// The VM's plan, if it has one (a shared workspace under the guard).
    pub fn load(vm_dir: &Path) -> Result<Option<Guard>, GitError> {
        let path = Guard::path(vm_dir);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(GitError::io("reading", &path)(e)),
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| GitError::BadGuardFile { path, why: e.to_string() })
    }

    /// Saves the plan where [`Guard::load`] and the helper find it.
    pub fn save(&self, vm_dir: &Path) -> Result<(), GitError> {
        let path = Guard::path(vm_dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(GitError::io("creating", parent))?;
        }
        let text = serde_json::to_vec_pretty(self).map_err(|e| GitError::BadGuardFile { path: path.clone(), why: e.to_string() })?;
        let temp = path.with_extension("new");
        std::fs::write(&temp, text).map_err(GitError::io("writing", &temp))?;
        std::fs::rename(&temp, &path).map_err(GitError::io("writing", &path))
    }

    /// Removes a VM's plan (a VM started unguarded, or with `--ro`).
    pub fn remove(vm_dir: &Path) {
        let _ = std::fs::remove_file(Guard::path(vm_dir));
        let _ = std::fs::remove_dir_all(vm_dir.join(VIEWS_DIR));
    }

    /// What `Prepare` is asked to do for the guarded repositories.
    pub fn prepare_request(&self) -> Vec<hutch_proto::v1::GitRepo> {
        self.repos
            .iter()
            .map(|repo| hutch_proto::v1::GitRepo {
                worktree: repo.worktree.display().to_string(),
                object_format: repo.object_format.clone(),
                user_name: repo.user_name.clone(),
                user_email: repo.user_email.clone(),
                empty: repo.gitdir.is_none(),
                modules: repo
                    .modules
                    .iter()
                    .map(|m| hutch_proto::v1::GitModule { gitdir: m.rel.clone(), worktree: m.worktree.display().to_string() })
                    .collect(),
            })
            .collect()
    }

    /// The `.git` entries the guard put there or covers (a repository's
    /// view, a submodule's read-only `.git`, one inside a read-only
    /// unpopulated submodule), which the watcher and the nested-repository
    /// scan leave alone. A pinned folder's `.git` is not among them: the
    /// folders leading to a submodule stay writable.
    pub fn known_git_entries(&self) -> BTreeSet<PathBuf> {
        let mut known: BTreeSet<PathBuf> = self.repos.iter().map(|r| r.worktree.join(".git")).collect();
        for mount in &self.mounts {
            match mount {
                Mount::ReadOnly { path } if path.file_name().is_some_and(|n| n == ".git") => {
                    known.insert(path.clone());
                }
                Mount::ReadOnly { path } => {
                    known.insert(path.join(".git"));
                }
                Mount::Bind { target, .. } if target.file_name().is_some_and(|n| n == ".git") => {
                    known.insert(target.clone());
                }
                _ => {}
            }
        }
        known
    }
}

/// Refuses a shared workspace holding a repository on a VM manager whose
/// share hutch cannot guard, unless the user opted out.
pub fn check_backend(kind: BackendKind, workspace: Option<&Path>, unguarded: bool, heavy: &[String]) -> Result<(), GitError> {
    let Some(workspace) = workspace else { return Ok(()) };
    if kind == BackendKind::Qemu || unguarded {
        return Ok(());
    }
    if has_git(workspace, heavy) {
        return Err(GitError::BackendCannotGuard { backend: kind.as_str() });
    }
    Ok(())
}

/// Whether the project has a `.git` anywhere the walk looks.
fn has_git(workspace: &Path, heavy: &[String]) -> bool {
    workspace.join(".git").symlink_metadata().is_ok() || !walk_nested(workspace, heavy).0.is_empty()
}

/// Works out the plan for `workspace` and writes its views into `vm_dir`.
pub fn plan(workspace: &Path, vm_dir: &Path, heavy: &[String]) -> Result<Guard, GitError> {
    let views = vm_dir.join(VIEWS_DIR);
    match std::fs::remove_dir_all(&views) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(GitError::io("removing the earlier views", &views)(e)),
        _ => {}
    }
    let mut plan = Planner { workspace: workspace.to_path_buf(), views, guard: Guard::default(), guarded: BTreeSet::new() };
    plan.guard.workspace = workspace.to_path_buf();
    match plan_into(&mut plan, workspace, heavy) {
        Ok(()) => Ok(plan.guard),
        Err(e) => {
            // What this attempt created in the project goes again.
            plan.guard.created.reverse();
            crate::heavy::remove_mount_points(&plan.guard.created);
            Err(e)
        }
    }
}

fn plan_into(plan: &mut Planner, workspace: &Path, heavy: &[String]) -> Result<(), GitError> {
    let dot_git = workspace.join(".git");
    match kind_of(&dot_git)? {
        Entry::Gitdir => {
            plan.repo(workspace)?;
            let notes = super::config_scan::scan(&Repo::new(&dot_git, Some(workspace.to_path_buf())), workspace);
            plan.guard.notes.extend(notes);
        }
        Entry::OtherDir => {
            plan.read_only(&dot_git);
            plan.empty_repo(workspace);
        }
        Entry::File => {
            plan.read_only(&dot_git);
            plan.guard.notes.push(format!(
                "{} is a `.git` file (a linked worktree or a submodule): it is read-only in the guest, which gets no repository there",
                dot_git.display()
            ));
        }
        Entry::Missing => {
            crate::dir_times::keeping_parent_times(&dot_git, |p| std::fs::create_dir(p))
                .map_err(GitError::io("creating the placeholder", &dot_git))?;
            plan.guard.created.push(dot_git.clone());
            plan.read_only(&dot_git);
            plan.empty_repo(workspace);
        }
    }
    let (nested, stopped) = walk_nested(workspace, heavy);
    for dir in nested {
        if plan.guarded.contains(&dir.join(".git")) {
            continue;
        }
        plan.pin_chain(&dir)?;
        plan.pin(&dir);
        let dot_git = dir.join(".git");
        match kind_of(&dot_git)? {
            Entry::Gitdir => plan.repo(&dir)?,
            Entry::OtherDir | Entry::File => plan.read_only(&dot_git),
            Entry::Missing => {}
        }
    }
    if stopped {
        plan.guard.notes.push(format!(
            "the search for nested repositories stopped after {NESTED_MAX_DIRS} folders or {NESTED_DEPTH} levels: a repository deeper in {} is not guarded",
            workspace.display()
        ));
    }
    plan.guard.created.reverse();
    plan.order_mounts();
    Ok(())
}

/// What a `.git` is.
enum Entry {
    /// A gitdir (HEAD and objects/).
    Gitdir,
    /// A folder that is not one (an empty placeholder left from a crash…).
    OtherDir,
    /// A `.git` file (`gitdir: …`).
    File,
    /// Nothing.
    Missing,
}

fn kind_of(dot_git: &Path) -> Result<Entry, GitError> {
    match dot_git.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => Err(GitError::Unguardable { path: dot_git.to_path_buf(), why: "is a symlink".into() }),
        Ok(meta) if meta.is_dir() => {
            let head = dot_git.join("HEAD").symlink_metadata().is_ok_and(|m| m.is_file());
            let objects = dot_git.join("objects").symlink_metadata().is_ok_and(|m| m.is_dir());
            Ok(if head && objects { Entry::Gitdir } else { Entry::OtherDir })
        }
        Ok(meta) if meta.is_file() => Ok(Entry::File),
        Ok(_) => Err(GitError::Unguardable { path: dot_git.to_path_buf(), why: "is neither a folder nor a file".into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Entry::Missing),
        Err(e) => Err(GitError::io("reading", dot_git)(e)),
    }
}

/// Builds a [`Guard`].
struct Planner {
    workspace: PathBuf,
    views: PathBuf,
    guard: Guard,
    /// Every path a mount covers.
    guarded: BTreeSet<PathBuf>,
}

impl Planner {
    fn pin(&mut self, path: &Path) {
        if self.guarded.insert(path.to_path_buf()) {
            self.guard.mounts.push(Mount::Pin { path: path.to_path_buf() });
        }
    }

    fn read_only(&mut self, path: &Path) {
        if self.guarded.insert(path.to_path_buf()) {
            self.guard.mounts.push(Mount::ReadOnly { path: path.to_path_buf() });
        } else if let Some(mount) = self.guard.mounts.iter_mut().find(|m| matches!(m, Mount::Pin { path: p } if p == path)) {
            // Read-only pins as well.
            *mount = Mount::ReadOnly { path: path.to_path_buf() };
        }
    }

    /// Pins every folder strictly between the workspace and `path`.
    fn pin_chain(&mut self, path: &Path) -> Result<(), GitError> {
        let Ok(relative) = path.strip_prefix(&self.workspace) else { return Ok(()) };
        let mut at = self.workspace.clone();
        let parts: Vec<Component<'_>> = relative.components().collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            at.push(part);
            match at.symlink_metadata() {
                Ok(meta) if meta.is_dir() => self.pin(&at.clone()),
                Ok(_) => {
                    return Err(GitError::Unguardable {
                        path: at.clone(),
                        why: "leads to a submodule or repository and is not a folder".into(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&at).map_err(GitError::io("creating", &at))?;
                    self.guard.created.push(at.clone());
                    self.pin(&at.clone());
                }
                Err(e) => return Err(GitError::io("reading", &at)(e)),
            }
        }
        Ok(())
    }

    /// A workspace where the host keeps no repository: the guest gets an empty gitdir.
    fn empty_repo(&mut self, worktree: &Path) {
        self.guard.repos.push(GuardedRepo {
            worktree: worktree.to_path_buf(),
            gitdir: None,
            object_format: String::new(),
            user_name: String::new(),
            user_email: String::new(),
            head: Head::default(),
            modules: Vec::new(),
        });
    }

    /// A repository with its view, its submodules' views and gitlinks.
    fn repo(&mut self, worktree: &Path) -> Result<(), GitError> {
        let gitdir = worktree.join(".git");
        let repo = Repo::new(&gitdir, Some(worktree.to_path_buf()));
        let view = self.views.join(self.guard.repos.len().to_string());
        let made = view::write(&repo, &view)?;
        let (objects, objects_view) = view::objects(&gitdir, &view);
        self.guard.mounts.push(Mount::Bind { source: objects, target: objects_view });
        let mut modules = Vec::new();
        for (rel, module_gitdir) in module_gitdirs(&gitdir)? {
            let Some(module_worktree) = module_worktree(&module_gitdir)? else { continue };
            if !module_worktree.starts_with(&self.workspace) {
                continue;
            }
            let module_view = view.join(&rel);
            let module_repo = Repo::new(&module_gitdir, Some(module_worktree.clone()));
            let module_made = view::write(&module_repo, &module_view)?;
            let (objects, objects_view) = view::objects(&module_gitdir, &module_view);
            self.guard.mounts.push(Mount::Bind { source: objects, target: objects_view });
            modules.push(Module { rel, gitdir: module_gitdir, worktree: module_worktree, head: module_made.head });
        }
        let identity = |key: &str| repo.text(&["config", "--get", key]).unwrap_or_default();
        self.guard.repos.push(GuardedRepo {
            worktree: worktree.to_path_buf(),
            gitdir: Some(gitdir.clone()),
            object_format: made.object_format,
            user_name: identity("user.name"),
            user_email: identity("user.email"),
            head: made.head,
            modules: modules.clone(),
        });
        self.guarded.insert(gitdir.clone());
        self.guard.mounts.push(Mount::Bind { source: view, target: gitdir });
        for (worktree, gitlink) in gitlinks(&repo, worktree)? {
            self.gitlink(&worktree.join(gitlink))?;
        }
        for module in &modules {
            let module_repo = Repo::new(&module.gitdir, Some(module.worktree.clone()));
            for (worktree, gitlink) in gitlinks(&module_repo, &module.worktree)? {
                self.gitlink(&worktree.join(gitlink))?;
            }
        }
        Ok(())
    }

    /// Guards the submodule folder `path` a gitlink names.
    fn gitlink(&mut self, path: &Path) -> Result<(), GitError> {
        if !path.starts_with(&self.workspace) {
            return Ok(());
        }
        self.pin_chain(path)?;
        match path.symlink_metadata() {
            Ok(meta) if meta.is_dir() => {
                let dot_git = path.join(".git");
                match kind_of(&dot_git)? {
                    Entry::Gitdir => {
                        self.pin(path);
                        self.repo(path)?;
                    }
                    Entry::File | Entry::OtherDir => {
                        self.pin(path);
                        self.read_only(&dot_git);
                    }
                    Entry::Missing => self.read_only(path),
                }
                Ok(())
            }
            Ok(_) => Err(GitError::Unguardable { path: path.to_path_buf(), why: "is a submodule in the index but not a folder".into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(path).map_err(GitError::io("creating", path))?;
                self.guard.created.push(path.to_path_buf());
                self.read_only(path);
                Ok(())
            }
            Err(e) => Err(GitError::io("reading", path)(e)),
        }
    }

    /// Objects binds first (they fill the views), then everything in the
    /// project, shallower paths first (a pin before what lies inside it).
    fn order_mounts(&mut self) {
        let depth = |m: &Mount| match m {
            Mount::Bind { target, .. } if !target.starts_with(&self.workspace) => 0,
            Mount::Pin { path } | Mount::ReadOnly { path } | Mount::Bind { target: path, .. } => path.components().count(),
        };
        self.guard.mounts.sort_by_key(depth);
    }
}

/// The gitlinks (submodule paths) of `repo`'s index, relative to `worktree`.
fn gitlinks(repo: &Repo, worktree: &Path) -> Result<Vec<(PathBuf, PathBuf)>, GitError> {
    let listed = repo.run(&["ls-files", "--stage", "-z"])?;
    let mut out = Vec::new();
    for entry in listed.split(|&b| b == 0) {
        // "<mode> <oid> <stage>\t<path>"
        let Some(tab) = entry.iter().position(|&b| b == b'\t') else { continue };
        if entry.starts_with(b"160000 ") {
            let path = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&entry[tab + 1..]);
            out.push((worktree.to_path_buf(), PathBuf::from(path)));
        }
    }
    Ok(out)
}

/// Submodule gitdirs below `gitdir/modules` (folders holding HEAD and
/// objects/), with their paths below `gitdir`.
fn module_gitdirs(gitdir: &Path) -> Result<Vec<(String, PathBuf)>, GitError> {
    let mut found = Vec::new();
    let mut pending = vec![gitdir.join("modules")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if path.join("HEAD").is_file() && path.join("objects").is_dir() {
                let Ok(rel) = path.strip_prefix(gitdir) else { continue };
                let Some(rel) = rel.to_str().filter(|r| !r.chars().any(char::is_control)) else { continue };
                found.push((rel.to_owned(), path.clone()));
                if found.len() > MAX_MODULES {
                    return Err(GitError::Unguardable {
                        path: gitdir.to_path_buf(),
                        why: format!("has more than {MAX_MODULES} submodules"),
                    });
                }
                // A submodule's own submodules are below its `modules/`.
                pending.push(path.join("modules"));
            } else {
                pending.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A submodule gitdir's worktree (`core.worktree`, relative to the gitdir).
fn module_worktree(gitdir: &Path) -> Result<Option<PathBuf>, GitError> {
    let config = gitdir.join("config");
    let repo = Repo::new(gitdir, None);
    let Ok(value) =
        repo.text(&[std::ffi::OsStr::new("config"), "--file".as_ref(), config.as_os_str(), "--get".as_ref(), "core.worktree".as_ref()])
    else {
        return Ok(None);
    };
    Ok(Some(super::normalize(&gitdir.join(value))))
}

/// Folders below `workspace` (not itself) that hold a `.git`, found by a
/// bounded walk that never follows symlinks and skips `.git` and heavy
/// dirs; and whether the walk stopped at its bounds.
pub(super) fn walk_nested(workspace: &Path, heavy: &[String]) -> (Vec<PathBuf>, bool) {
    let mut found = Vec::new();
    let mut level = vec![workspace.to_path_buf()];
    let mut visited = 0;
    for _ in 0..NESTED_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                if name == ".git" || heavy.iter().any(|h| name == h.as_str()) {
                    continue;
                }
                visited += 1;
                if visited > NESTED_MAX_DIRS {
                    return (found, true);
                }
                let path = entry.path();
                if path.join(".git").symlink_metadata().is_ok() {
                    found.push(path.clone());
                }
                next.push(path);
            }
        }
        if next.is_empty() {
            return (found, false);
        }
        level = next;
    }
    let deeper =
        level.iter().any(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| e.file_type().is_ok_and(|t| t.is_dir())));
    (found, deeper)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A project with a submodule (`libs/lib`), an unpopulated one and a nested repository.
    fn project(root: &Path) -> PathBuf {
        let lib = root.join("lib-origin");
        std::fs::create_dir(&lib).unwrap();
        git(&lib, &["init", "-q"]);
        git(&lib, &["commit", "-q", "--allow-empty", "-m", "lib"]);
        let ws = root.join("ws");
        std::fs::create_dir(&ws).unwrap();
        git(&ws, &["init", "-q"]);
        git(&ws, &["config", "user.name", "Host User"]);
        git(&ws, &["submodule", "add", "-q", lib.to_str().unwrap(), "libs/lib"]);
        git(&ws, &["submodule", "add", "-q", lib.to_str().unwrap(), "empty-sub"]);
        git(&ws, &["commit", "-qm", "subs"]);
        git(&ws, &["submodule", "deinit", "-q", "-f", "empty-sub"]);
        std::fs::create_dir_all(ws.join("tools/other")).unwrap();
        git(&ws.join("tools/other"), &["init", "-q"]);
        std::fs::create_dir_all(ws.join("node_modules/pkg/.git")).unwrap();
        ws
    }

    #[test]
    fn a_project_its_submodules_and_nested_repositories_are_all_guarded() {
        let root = tempfile::tempdir().unwrap();
        let ws = project(root.path());
        let vm = root.path().join("vm");
        let guard = plan(&ws, &vm, &["node_modules".to_owned()]).unwrap();

        let worktrees: Vec<&Path> = guard.repos.iter().map(|r| r.worktree.as_path()).collect();
        assert_eq!(worktrees, [ws.as_path(), ws.join("tools/other").as_path()]);
        let top = &guard.repos[0];
        assert_eq!(top.user_name, "Host User");
        assert_eq!(top.head.symref.as_deref(), Some("refs/heads/main"));
        // `submodule deinit` leaves no `core.worktree`: a gitdir with no worktree gets no copy.
        assert_eq!(top.modules.len(), 1, "{:?}", top.modules);
        assert_eq!(top.modules[0].rel, "modules/libs/lib");
        assert_eq!(top.modules[0].worktree, ws.join("libs/lib"));

        let has = |m: Mount| guard.mounts.contains(&m);
        assert!(has(Mount::Bind { source: ws.join(".git/objects"), target: vm.join("git/views/0/objects") }));
        assert!(has(Mount::Bind {
            source: ws.join(".git/modules/libs/lib/objects"),
            target: vm.join("git/views/0/modules/libs/lib/objects")
        }));
        assert!(has(Mount::Bind { source: vm.join("git/views/0"), target: ws.join(".git") }));
        assert!(has(Mount::Pin { path: ws.join("libs") }) && has(Mount::Pin { path: ws.join("libs/lib") }));
        assert!(has(Mount::ReadOnly { path: ws.join("libs/lib/.git") }));
        assert!(has(Mount::ReadOnly { path: ws.join("empty-sub") }), "an unpopulated submodule is read-only: {:?}", guard.mounts);
        assert!(
            has(Mount::Pin { path: ws.join("tools") })
                && has(Mount::Bind { source: vm.join("git/views/1"), target: ws.join("tools/other/.git") })
        );
        assert!(!guard.mounts.iter().any(|m| format!("{m:?}").contains("node_modules")), "heavy dirs are not walked");
        assert!(vm.join("git/views/0/modules/libs/lib/HEAD").is_file());
        // Shallower paths first, after the objects.
        let first_in_project =
            guard.mounts.iter().position(|m| !matches!(m, Mount::Bind { target, .. } if target.starts_with(&vm))).unwrap();
        assert!(guard.mounts[..first_in_project].iter().all(|m| matches!(m, Mount::Bind { .. })));
        let pos = |m: &Mount| guard.mounts.iter().position(|x| x == m).unwrap();
        assert!(pos(&Mount::Pin { path: ws.join("libs") }) < pos(&Mount::ReadOnly { path: ws.join("libs/lib/.git") }));
        assert!(guard.created.is_empty());

        guard.save(&vm).unwrap();
        assert_eq!(Guard::load(&vm).unwrap(), Some(guard));
    }

    #[test]
    fn a_project_without_a_repository_gets_a_placeholder_and_a_missing_submodule_folder_is_made() {
        let root = tempfile::tempdir().unwrap();
        let plain = root.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let guard = plan(&plain, &root.path().join("vm1"), &[]).unwrap();
        assert_eq!(guard.repos.len(), 1);
        assert_eq!(guard.repos[0].gitdir, None);
        assert_eq!(guard.created, [plain.join(".git")]);
        assert_eq!(guard.mounts, [Mount::ReadOnly { path: plain.join(".git") }]);

        let ws = project(root.path());
        std::fs::remove_dir_all(ws.join("empty-sub")).unwrap();
        let guard = plan(&ws, &root.path().join("vm2"), &[]).unwrap();
        assert_eq!(guard.created, [ws.join("empty-sub")]);
        assert!(guard.mounts.contains(&Mount::ReadOnly { path: ws.join("empty-sub") }));
    }

    #[test]
    fn shapes_that_cannot_be_guarded_are_refused_and_tart_and_lima_refuse_a_repository() {
        let root = tempfile::tempdir().unwrap();
        let ws = root.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::os::unix::fs::symlink(root.path(), ws.join(".git")).unwrap();
        let err = plan(&ws, &root.path().join("vm"), &[]).unwrap_err();
        assert!(matches!(&err, GitError::Unguardable { why, .. } if why.contains("symlink")), "{err}");
        assert!(err.hint().unwrap().contains("--unguarded-git"));

        let err = check_backend(BackendKind::Lima, Some(&ws), false, &[]).unwrap_err();
        assert!(err.to_string().contains("lima shares the workspace writable"), "{err}");
        assert!(err.hint().unwrap().contains("--ro") && err.hint().unwrap().contains("--sync"));
        check_backend(BackendKind::Tart, Some(&ws), true, &[]).unwrap();
        check_backend(BackendKind::Tart, None, false, &[]).unwrap();
        check_backend(BackendKind::Qemu, Some(&ws), false, &[]).unwrap();
        let plain = root.path().join("plain");
        std::fs::create_dir_all(plain.join("src")).unwrap();
        check_backend(BackendKind::Tart, Some(&plain), false, &[]).unwrap();
        std::fs::create_dir_all(plain.join("src/vendored/.git")).unwrap();
        assert!(check_backend(BackendKind::Tart, Some(&plain), false, &[]).is_err(), "a nested repository counts");
    }
}
