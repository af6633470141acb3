//! The `Prepare` call: the host project at the host's own absolute path, and
//! heavy artifact dirs on VM-local disk.
//!
//! - [`workspace`] mounts (or links) the share at the workspace path;
//! - [`heavy`] finds heavy dirs and redirects each to VM-local storage;
//! - [`git`] gives each repository the host guards a VM-local gitdir;
//! - [`mounts`] is every mount operation (and the mount table, so every step
//!   can tell it is already done and a second `Prepare` changes nothing),
//!   behind a trait: the logic above is unit-tested with a fake, no root.

pub mod git;
pub mod heavy;
pub mod mounts;
pub mod workspace;

use std::path::{Path, PathBuf};

use hutch_proto::v1::{PrepareRequest, PrepareResponse};

pub use heavy::Strategy;
pub use mounts::Mounts;

/// Where and how this agent keeps heavy dirs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Root of VM-local storage for heavy dirs (`/var/lib/hutch/local`).
    pub local_root: PathBuf,
    /// Bind mounts (Linux) or symlinks (macOS).
    pub strategy: Strategy,
    /// Where Tart shares are already visible (`None`: the OS's way, see
    /// [`workspace`]).
    pub tart_shares: Option<PathBuf>,
    /// Who owns the VM-local heavy dirs (uid, gid): the user commands run
    /// as (`--exec-user`); `None`: the agent's own user.
    pub owner: Option<(u32, u32)>,
}

impl Default for Config {
    fn default() -> Self {
        Config { local_root: PathBuf::from("/var/lib/hutch/local"), strategy: Strategy::native(), tart_shares: None, owner: None }
    }
}

/// Why `Prepare` failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The request names a path that is not a clean absolute path.
    #[error("invalid path {0:?}: it must be absolute, without `..`")]
    BadPath(String),
    /// The request names no way to reach the project.
    #[error("no workspace share given")]
    NoShare,
    /// The request is malformed in another way (said how).
    #[error("{0}")]
    BadRequest(String),
    /// A VM-local gitdir could not be made.
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// This guest cannot do what was asked.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    #[error("{0}")]
    Unsupported(String),
    /// A mount failed.
    #[error("mounting {what} at {path}: {source}")]
    Mount {
        /// What was being mounted.
        what: String,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl PrepareError {
    /// Wraps an I/O error with what was being done and where.
    pub fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PrepareError + 'a {
        move |source| PrepareError::Io { what, path: path.to_path_buf(), source }
    }
}

/// Carries out `request` (blocking: mounts and a directory walk) with the
/// mount operations of `mounts` (the kernel's: [`mounts::System`]).
pub fn prepare(request: &PrepareRequest, config: &Config, mounts: &dyn Mounts) -> Result<PrepareResponse, PrepareError> {
    let workspace = clean_absolute(&request.workspace)?;
    let share = request.share.as_ref().and_then(|s| s.kind.as_ref()).ok_or(PrepareError::NoShare)?;
    workspace::ensure(&workspace, share, config.tart_shares.as_deref(), mounts)?;
    let (git, guarded) = git::ensure(&workspace, &request.git, config, mounts)?;
    if !request.git.is_empty() {
        crate::git::registry::replace(guarded);
    }
    let depth = if request.heavy_depth == 0 { heavy::DEFAULT_DEPTH } else { request.heavy_depth as usize };
    let heavy = heavy::redirect(&workspace, &request.heavy_dirs, depth, config, mounts)?;
    Ok(PrepareResponse { workspace: workspace.display().to_string(), heavy, git, git_stamp: crate::git::registry::stamp() })
}

/// Accepts only absolute paths without `.`/`..` components.
pub fn clean_absolute(path: &str) -> Result<PathBuf, PrepareError> {
    // Checked on the text: `Path::components` silently drops `.` segments.
    let clean = path.starts_with('/') && path.split('/').skip(1).all(|segment| segment != "." && segment != "..") && !path.contains('\0');
    if clean { Ok(PathBuf::from(path)) } else { Err(PrepareError::BadPath(path.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_absolute_paths_pass() {
        assert!(clean_absolute("/home/me/proj").is_ok());
        for bad in ["", "rel/path", "/a/../b", "/a/./b"] {
            assert!(clean_absolute(bad).is_err(), "{bad}");
        }
    }
}
