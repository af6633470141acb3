//! Prepare's git step: a VM-local gitdir mounted over each guarded
//! repository's `.git` (see `crate::git` for why).
//!
//! For a repository whose `.git` in the share is the host's read-only view:
//! the view is bind-mounted to `<local>/git-<key>/view` (so the gitdir's
//! alternates can still name its objects once `.git` is covered), the gitdir
//! is seeded at `<local>/git-<key>/dir` ([`crate::git::seed`]), given to the
//! user commands run as, and bind-mounted over `<worktree>/.git`. For a
//! workspace the host keeps no repository in, `.git` is the host's empty,
//! read-only placeholder and gets an empty gitdir instead. Each `.git` is
//! opened one name at a time without following symlinks and mounted through
//! that descriptor, as heavy dirs are. A `.git` that already shows its
//! gitdir (a second `Prepare` in one boot) is left as it is.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use hutch_proto::v1::{GitModule, GitPrepared, GitRepo};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::heavy::workspace_key;
use super::mounts::Mounts;
use super::{Config, PrepareError, clean_absolute};
use crate::git::registry::Guarded;
use crate::git::seed::{self, Identity};
use crate::nofollow::{NotOpened, open_dir};

/// Repositories one `Prepare` may name (the host guards the project's
/// repository, its submodules' and those found a few levels down).
pub const MAX_REPOS: usize = 256;

/// Sets up every repository of `repos` below `workspace`; returns what was
/// done to each (in order) and the gitdirs to register.
pub fn ensure(
    workspace: &Path,
    repos: &[GitRepo],
    config: &Config,
    mounts: &dyn Mounts,
) -> Result<(Vec<GitPrepared>, Vec<Guarded>), PrepareError> {
    if repos.len() > MAX_REPOS {
        return Err(PrepareError::BadRequest(format!("{} repositories, over {MAX_REPOS}", repos.len())));
    }
    let mut prepared = Vec::with_capacity(repos.len());
    let mut guarded = Vec::new();
    for repo in repos {
        let (done, entries) = ensure_one(workspace, repo, config, mounts)?;
        prepared.push(done);
        guarded.extend(entries);
    }
    Ok((prepared, guarded))
}

fn ensure_one(workspace: &Path, repo: &GitRepo, config: &Config, mounts: &dyn Mounts) -> Result<(GitPrepared, Vec<Guarded>), PrepareError> {
    let worktree = checked_path(&repo.worktree)?;
    let Ok(relative) = worktree.strip_prefix(workspace) else {
        return Err(PrepareError::BadRequest(format!(
            "repository {} is outside the workspace",
            crate::untrusted::shown_str(&repo.worktree)
        )));
    };
    let visible = worktree.join(".git");
    let base = config.local_root.join(format!("git-{}", workspace_key(&worktree)));
    let dir = base.join("dir");
    let answer = |note: &str| GitPrepared { worktree: repo.worktree.clone(), gitdir: dir.display().to_string(), note: note.to_owned() };
    let dot_git = match open_below(workspace, &relative.join(".git")) {
        Ok(fd) => fd,
        Err(NotOpened::Symlink) => return Ok((answer("`.git` is a symlink in the guest: left alone"), Vec::new())),
        Err(NotOpened::NotAFolder | NotOpened::Missing) => {
            return Ok((answer("`.git` is not the host's view (a file, or missing): left alone"), Vec::new()));
        }
        Err(NotOpened::Os(e)) => return Err(PrepareError::io("opening", &visible)(e.into())),
    };
    let seeded = base.join("seeded");
    let mut entries = vec![Guarded {
        worktree: worktree.clone(),
        visible: visible.clone(),
        local: dir.clone(),
        seeded_config: (!repo.empty).then(|| seeded.join("config")),
    }];
    let identity = Identity {
        object_format: repo.object_format.clone(),
        user_name: repo.user_name.clone(),
        user_email: repo.user_email.clone(),
        worktree: None,
        submodules: Identity::submodules_below("", repo.modules.iter().map(|m| m.gitdir.as_str())),
    };
    let mut modules = Vec::with_capacity(repo.modules.len());
    for module in &repo.modules {
        let (rel, module_worktree) = checked_module(module, workspace)?;
        entries.push(Guarded {
            worktree: module_worktree.clone(),
            visible: visible.join(&rel),
            local: dir.join(&rel),
            seeded_config: Some(seeded.join(&rel).join("config")),
        });
        modules.push((rel, module_worktree));
    }
    if same_file(dot_git.as_fd(), &dir) {
        return Ok((answer(""), entries));
    }
    let mut written = Vec::new();
    if repo.empty {
        written.extend(seed::empty(&dir)?);
    } else {
        let view = base.join("view");
        std::fs::create_dir_all(&view).map_err(PrepareError::io("creating", &view))?;
        std::fs::create_dir_all(&seeded).map_err(PrepareError::io("creating", &seeded))?;
        if !same_file(dot_git.as_fd(), &view) {
            let view_fd = open_below(&view, Path::new("")).map_err(|e| not_opened(&view, e))?;
            mounts.bind(&fd_path(&dot_git), &view, view_fd.as_fd()).map_err(|source| PrepareError::Mount {
                what: format!("the host's view of {}", visible.display()),
                path: view.clone(),
                source,
            })?;
        }
        written.extend(seed::seed(&view, &dir, &seeded.join("config"), &identity)?);
        for (rel, module_worktree) in &modules {
            let module_seeded = seeded.join(rel);
            std::fs::create_dir_all(&module_seeded).map_err(PrepareError::io("creating", &module_seeded))?;
            let prefix = format!("{}/", rel.display());
            let identity = Identity {
                worktree: Some(module_worktree.clone()),
                submodules: Identity::submodules_below(&prefix, repo.modules.iter().map(|m| m.gitdir.as_str())),
                ..identity.clone()
            };
            written.extend(seed::seed(&view.join(rel), &dir.join(rel), &module_seeded.join("config"), &identity)?);
        }
    }
    if let Some((uid, gid)) = config.owner {
        for path in written.iter().chain(std::iter::once(&dir)) {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(PrepareError::io("giving the command user", path))?;
        }
    }
    mounts.bind(&dir, &visible, dot_git.as_fd()).map_err(|source| PrepareError::Mount {
        what: format!("the VM-local gitdir {}", dir.display()),
        path: visible.clone(),
        source,
    })?;
    Ok((answer(""), entries))
}

/// A repository path from the request: clean, absolute, no control characters.
fn checked_path(text: &str) -> Result<PathBuf, PrepareError> {
    if text.chars().any(char::is_control) {
        return Err(PrepareError::BadPath(crate::untrusted::shown_str(text)));
    }
    clean_absolute(text)
}

/// A submodule's gitdir below `.git` (`modules/…`, plain names only) and its
/// worktree, inside the workspace.
fn checked_module(module: &GitModule, workspace: &Path) -> Result<(PathBuf, PathBuf), PrepareError> {
    let rel = Path::new(&module.gitdir);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)))
        && rel.starts_with("modules")
        && rel.components().count() >= 2
        && !module.gitdir.chars().any(char::is_control);
    if !plain {
        return Err(PrepareError::BadPath(crate::untrusted::shown_str(&module.gitdir)));
    }
    let worktree = checked_path(&module.worktree)?;
    if !worktree.starts_with(workspace) {
        return Err(PrepareError::BadRequest(format!(
            "submodule {} is outside the workspace",
            crate::untrusted::shown_str(&module.worktree)
        )));
    }
    Ok((rel.to_path_buf(), worktree))
}

/// Opens the folder `relative` below `base` one name at a time, never
/// following a symlink and creating nothing.
fn open_below(base: &Path, relative: &Path) -> Result<OwnedFd, NotOpened> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(base, flags, Mode::empty()).map_err(NotOpened::Os)?;
    for component in relative.components() {
        if let Component::Normal(name) = component {
            fd = open_dir(fd.as_fd(), name.as_bytes(), false)?;
        }
    }
    Ok(fd)
}

fn not_opened(path: &Path, e: NotOpened) -> PrepareError {
    let errno = match e {
        NotOpened::Os(errno) => errno,
        NotOpened::Missing => nix::errno::Errno::ENOENT,
        NotOpened::Symlink => nix::errno::Errno::ELOOP,
        NotOpened::NotAFolder => nix::errno::Errno::ENOTDIR,
    };
    PrepareError::io("opening", path)(errno.into())
}

/// The descriptor's `/proc` link: the folder itself, as a mount source.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Whether the open folder `fd` is the folder at `path` (same device and inode).
fn same_file(fd: std::os::fd::BorrowedFd<'_>, path: &Path) -> bool {
    let Ok(open) = nix::sys::stat::fstat(fd) else { return false };
    std::fs::metadata(path).is_ok_and(|m| m.dev() == open.st_dev && m.ino() == open.st_ino)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::super::mounts::fake::{Call, Recorder};
    use super::*;

    fn config(local: &Path) -> Config {
        Config { local_root: local.to_path_buf(), strategy: super::super::Strategy::Bind, tart_shares: None, owner: None }
    }

    #[test]
    fn a_placeholder_gets_an_empty_gitdir_and_bad_requests_are_refused() {
        let (ws, local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir(ws.path().join(".git")).unwrap();
        let repo = GitRepo { worktree: ws.path().display().to_string(), empty: true, ..GitRepo::default() };
        let mounts = Recorder::default();
        let (done, entries) = ensure(ws.path(), std::slice::from_ref(&repo), &config(local.path()), &mounts).unwrap();
        let dir = local.path().join(format!("git-{}", workspace_key(ws.path()))).join("dir");
        assert_eq!(done[0].gitdir, dir.display().to_string());
        assert!(dir.is_dir());
        assert_eq!(*mounts.calls.borrow(), vec![Call::Bind(dir.clone(), ws.path().join(".git"))]);
        assert!(entries[0].is_empty_kind());

        let outside = GitRepo { worktree: "/elsewhere".into(), ..repo.clone() };
        assert!(matches!(ensure(ws.path(), &[outside], &config(local.path()), &mounts), Err(PrepareError::BadRequest(_))));
        let bad_module =
            GitRepo { modules: vec![GitModule { gitdir: "modules/../../x".into(), worktree: ws.path().display().to_string() }], ..repo };
        assert!(matches!(ensure(ws.path(), &[bad_module], &config(local.path()), &mounts), Err(PrepareError::BadPath(_))));
    }

    #[test]
    fn a_symlinked_dot_git_is_never_followed() {
        let (ws, local, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::os::unix::fs::symlink(elsewhere.path(), ws.path().join(".git")).unwrap();
        let repo = GitRepo { worktree: ws.path().display().to_string(), ..GitRepo::default() };
        let mounts = Recorder::default();
        let (done, entries) = ensure(ws.path(), &[repo], &config(local.path()), &mounts).unwrap();
        assert!(done[0].note.contains("symlink"), "{done:?}");
        assert!(entries.is_empty() && mounts.calls.borrow().is_empty());
    }
}
