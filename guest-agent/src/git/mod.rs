//! The guest's side of the host's git guard: repositories whose `.git` the
//! host serves read-only get a gitdir of their own on VM-local disk.
//!
//! The host never lets the guest write a `.git` it uses (see the host's
//! `git` module): on QEMU it serves each repository's `.git` as a read-only
//! *view* (its objects, and hutch's copies of HEAD, the refs, the index,
//! `info/exclude` and `shallow`; never its config or hooks). So that git
//! works fully in the guest, `Prepare` builds a gitdir on VM-local disk from
//! that view ([`seed`]) whose `objects/info/alternates` points at the
//! view's objects, and mounts it over `<worktree>/.git`
//! (`crate::prepare::git`). The guest's commits, branches, hooks and
//! configuration live there; the host takes the commits with `git fetch`
//! through an exec of `git upload-pack`, never by reading this gitdir.
//!
//! - [`registry`] remembers which gitdirs this agent set up (also across
//!   agent restarts within a boot);
//! - [`stamp`] is the cheap fingerprint of their refs that every `Exited`
//!   carries, so the host fetches only when something changed;
//! - [`state`] answers `GitState`: where each gitdir is, and what it holds
//!   that never reaches the host.

pub mod registry;
pub mod seed;
pub mod stamp;
pub mod state;

use std::path::PathBuf;

/// Why a VM-local gitdir could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
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
    /// The host's view holds something that is not what hutch writes there.
    #[error("the host's view {}: {why}", path.display())]
    BadView {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

impl GitError {
    /// Wraps an I/O error with what was being done and where.
    pub fn io<'a>(what: &'static str, path: &'a std::path::Path) -> impl FnOnce(std::io::Error) -> GitError + 'a {
        move |source| GitError::Io { what, path: path.to_path_buf(), source }
    }
}
