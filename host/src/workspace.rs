//! The host project in the guest: which folder it is (`--workspace` or the
//! current directory), asking the agent to set it up at the same path (its
//! `Prepare` call), and undoing on the host what that and hutch left there
//! ([`crate::heavy`]: mount points only for the heavy dirs a project uses).

use std::path::{Path, PathBuf};

use hutch_proto::v1::{HeavyMethod, PrepareRequest};

use tonic::Status;

use crate::backend::Backend;
use crate::connect::{self, ConnectError};
use crate::state::{HeavyLink, StateDir, VmRecord};

/// Why the workspace could not be found or set up.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The workspace folder cannot be resolved.
    #[error("workspace {}: {source}", path.display())]
    Unusable {
        /// The folder as given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The workspace is not a folder.
    #[error("workspace {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The current directory (the default workspace) is unreadable.
    #[error("reading the current directory: {0}")]
    Cwd(std::io::Error),
    /// The VM's agent cannot be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A heavy dir's mount point could not be made in the project.
    #[error("creating the mount point {}: {source}", path.display())]
    MountPoint {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The agent's `Prepare` failed.
    #[error("the agent could not set up the workspace: {}", .0.message())]
    Prepare(Status),
}

impl WorkspaceError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            WorkspaceError::Connect(e) => e.hint(),
            WorkspaceError::Prepare(_) => {
                Some("check that the workspace folder exists and is shared with the VM; `hutch reset NAME` starts over".into())
            }
            _ => None,
        }
    }
}

/// Shares the workspace at its host path in the guest and redirects heavy
/// dirs; records the mount points and symlinks it put into the host project.
pub async fn prepare(state: &StateDir, backend: &dyn Backend, record: &mut VmRecord) -> Result<(), WorkspaceError> {
    let (Some(workspace), Some(share)) = (record.workspace.clone(), backend.workspace_share(record)) else {
        return Ok(());
    };
    let created = crate::heavy::create_mount_points(&workspace, &record.heavy_dirs)
        .map_err(|source| WorkspaceError::MountPoint { path: workspace.clone(), source })?;
    record.created_dirs.extend(created.into_iter().filter(|c| !record.created_dirs.contains(c)).collect::<Vec<_>>());
    let mut client = connect::connect(state, record).await?;
    let request = PrepareRequest {
        workspace: workspace.display().to_string(),
        share: Some(share),
        heavy_dirs: record.heavy_dirs.clone(),
        heavy_depth: 0,
    };
    let response = client.prepare(request).await.map_err(WorkspaceError::Prepare)?.into_inner();
    record.heavy_links = response
        .heavy
        .iter()
        .filter(|h| h.method == HeavyMethod::HeavySymlink as i32)
        .map(|h| HeavyLink { path: h.path.clone().into(), target: h.local_path.clone().into() })
        .collect();
    for skipped in response.heavy.iter().filter(|h| h.method == HeavyMethod::HeavySkipped as i32) {
        eprintln!("hutch: {} stays on the shared folder: {}", skipped.path, skipped.note);
    }
    Ok(())
}

/// Removes the symlinks `prepare` put into the host project (macOS guests)
/// and the mount points hutch created that are still empty, leaving the
/// project as it was; mount points another running VM of the project still
/// uses wait for the last one (`crate::created_dirs`). A path that is no
/// longer ours is left alone.
pub fn remove_links(state: &StateDir, record: &mut VmRecord) {
    for link in std::mem::take(&mut record.heavy_links) {
        if std::fs::read_link(&link.path).is_ok_and(|target| target == link.target) {
            let _ = std::fs::remove_file(&link.path);
        }
    }
    let created = std::mem::take(&mut record.created_dirs);
    crate::created_dirs::release(state, record, created);
}

/// The workspace folder for `hutch up`/`run`: `--workspace` or the current
/// directory, absolute and with symlinks resolved (the guest mounts it at
/// this exact path).
pub fn resolve(given: Option<&Path>) -> Result<PathBuf, WorkspaceError> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_dir().map_err(WorkspaceError::Cwd)?,
    };
    let resolved = path.canonicalize().map_err(|source| WorkspaceError::Unusable { path: path.clone(), source })?;
    if !resolved.is_dir() {
        return Err(WorkspaceError::NotADirectory(resolved));
    }
    Ok(resolved)
}
