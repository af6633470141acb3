//! The project's repositories under the host's guard: nothing the guest
//! writes runs on the host through git.
//!
//! A shared `.git` lets the guest make the host run code at the user's next
//! everyday git command (hooks, `core.fsmonitor`, `core.pager`, filters,
//! aliases…), and a writable `.git` cannot be made safe by guarding some of
//! its files (git must create lock files in it, and a new `commondir`,
//! `config.worktree`, `rebase-merge/git-rebase-todo`, `modules/*/config`…
//! each makes the host run code too). So the guest never writes a `.git` the
//! host uses:
//!
//! - [`guard`] decides, at every VM start, what of the project the host
//!   serves read-only: each repository's `.git` becomes a read-only [`view`]
//!   (its objects; hutch's copies of HEAD, the refs, the index,
//!   `info/exclude`, `shallow`; never its config or hooks), each submodule's
//!   `.git` entry is read-only and the folders leading to it cannot be moved
//!   or removed, and a workspace without a repository gets an empty
//!   read-only `.git`;
//! - [`namespace`] enforces that where the guest cannot reach: the file
//!   server (virtiofsd, or QEMU itself for 9p) runs in a mount namespace
//!   hutch sets up first, with those read-only binds. Root in the guest
//!   cannot undo a mount on the host;
//! - in the guest, the agent mounts a gitdir of its own, made from the view,
//!   over each `.git`, so git works there as usual (see the agent's `git`
//!   module);
//! - the guest's commits come back by `git fetch` from the guest
//!   ([`bridge`]: `git upload-pack` through an agent exec, bounded): after
//!   every command whose end changed the guest's refs, at `hutch down`/`rm`
//!   and at the end of `run --rm` ([`take`]). Fetching runs none of the
//!   remote side's hooks or configuration, and the pack is checked as any
//!   untrusted remote's (`transfer.fsckObjects`). [`apply`] then
//!   fast-forwards the host's branches and updates the index of the
//!   checked-out one, and refuses (keeps under `refs/hutch/<vm>/`, and
//!   names) what must not be applied;
//! - [`report`] is what arrived and what was refused, and [`tell`] tells
//!   it to the user (stderr) and the audit log;
//! - [`watch`] quarantines a `.git` that appears in the project while the VM
//!   runs (a repository the guest made, which `git add .` would turn into a
//!   submodule host git recurses into).
//!
//! Every host git command hutch runs goes through [`host_git`], which turns
//! off hooks and the fsmonitor whatever the user's configuration says.
//! Tart and Lima serve the workspace themselves and offer no way to guard
//! part of it, so there a project with a repository is refused unless the
//! user opts out ([`guard::check_backend`]).

pub mod apply;
pub mod bridge;
pub mod config_scan;
pub mod guard;
pub mod host_git;
pub mod namespace;
pub mod nested;
pub mod refname;
pub mod report;
pub mod take;
pub mod tell;
pub mod view;
pub mod watch;

use std::path::{Component, Path, PathBuf};

/// Why the guard could not be set up, or the guest's commits not taken.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A host git command failed.
    #[error("`git {args}` in {}: {why}", dir.display())]
    Git {
        /// Its arguments, as shown.
        args: String,
        /// Where it ran.
        dir: PathBuf,
        /// Its error output (escaped, cut) or status.
        why: String,
    },
    /// git could not be run at all.
    #[error("running git: {0}")]
    NoGit(#[source] std::io::Error),
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The project holds a repository in a shape hutch cannot guard.
    #[error("{} {why}: hutch cannot guard it", path.display())]
    Unguardable {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The host cannot make the mount namespace the guard needs.
    #[error("the git guard needs a mount namespace, which this host does not allow: {0}")]
    NoNamespace(String),
    /// A mount in the guard's namespace failed.
    #[error("guarding {}: {source}", path.display())]
    Mount {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// This VM manager serves the workspace itself, and a repository in it
    /// cannot be guarded.
    #[error(
        "{backend} shares the workspace writable, .git included, and the host cannot guard part of that share: the guest could make git on this host run its code (hooks, config)"
    )]
    BackendCannotGuard {
        /// The backend's name.
        backend: &'static str,
    },
    /// The guard file of a VM is unreadable.
    #[error("the git guard of this VM ({}) is unreadable: {why}", path.display())]
    BadGuardFile {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The agent failed a call.
    #[error("the agent: {0}")]
    Agent(String),
    /// The guest sent more than hutch takes.
    #[error("the guest's repository: {0}")]
    TooMuch(String),
}

impl GitError {
    /// Wraps an I/O error with what was being done and where.
    pub fn io<'a>(what: &'static str, path: &'a std::path::Path) -> impl FnOnce(std::io::Error) -> GitError + 'a {
        move |source| GitError::Io { what, path: path.to_path_buf(), source }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            GitError::BackendCannotGuard { .. } => Some(guard::BACKEND_ALTERNATIVES.into()),
            GitError::NoGit(_) => Some("install git on this host (hutch runs it to make the guest's view of the repository and to take its commits), or pass --unguarded-git".into()),
            GitError::NoNamespace(_) | GitError::Unguardable { .. } => Some(
                "use --ro (the guest works on a copy), or --unguarded-git (or `unguarded_git = true` in ~/.config/hutch/config.toml) to share .git writable, knowing the guest can then run code on this host through git"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// `path` with `.` and `..` resolved lexically (the folder may not exist).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
