//! The host project in the guest: which folder it is (`--workspace` or the
//! current directory), asking the agent to set it up at the same path (its
//! `Prepare` call), and undoing on the host what that and hutch left there
//! ([`crate::heavy`]: mount points only for the heavy dirs a project uses).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use hutch_proto::v1::{HeavyDir, HeavyMethod, PrepareRequest};
use tonic::Status;

use crate::backend::Backend;
use crate::connect::{self, ConnectError};
use crate::state::{HeavyLink, StateDir, VmRecord};
use crate::transport::CallError;
use crate::untrusted::protocol::known;
use crate::untrusted::{Beneath, GuestPath, ProtocolError, limits, text};

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
    #[error("the agent could not set up the workspace: {}", text::shown(.0.message()))]
    Prepare(Status),
    /// The agent cannot give guarded repositories a gitdir of their own.
    #[error(
        "the agent in this VM does not support the host's guard of .git (it is older than this hutch): git would not work in the guest"
    )]
    GitUnsupported,
    /// The guard's plan is unreadable.
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// The agent's answer broke the protocol, or did not come in time.
    #[error(transparent)]
    Call(#[from] CallError),
}

impl WorkspaceError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            WorkspaceError::Connect(e) => e.hint(),
            WorkspaceError::GitUnsupported => Some(
                "rebuild the image so it carries this hutch's agent (`cargo xtask image`), or start the VM with --unguarded-git".into(),
            ),
            WorkspaceError::Git(e) => e.hint(),
            WorkspaceError::Prepare(_) => {
                Some("check that the workspace folder exists and is shared with the VM; `hutch reset NAME` starts over".into())
            }
            WorkspaceError::Call(e) => Some(e.hint()),
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
    let client = connect::connect(state, record).await?;
    let vm_dir = state.vm_dir(&record.name);
    let guard = crate::git::guard::Guard::load(&vm_dir)?;
    let git = guard.as_ref().map(crate::git::guard::Guard::prepare_request).unwrap_or_default();
    let request = PrepareRequest {
        workspace: workspace.display().to_string(),
        share: Some(share),
        heavy_dirs: record.heavy_dirs.clone(),
        heavy_depth: 0,
        git: git.clone(),
    };
    let deadline = client.deadline();
    let response = deadline.within("Prepare", client.prepare_checked(request)).await.map_err(CallError::from)?.map_err(|status| {
        if CallError::is_refusal(&status) { WorkspaceError::Call(CallError::from_status(status)) } else { WorkspaceError::Prepare(status) }
    })?;
    if !git.is_empty() {
        if response.git.len() != git.len() {
            return Err(WorkspaceError::GitUnsupported);
        }
        for prepared in response.git.iter().filter(|p| !p.note.is_empty()) {
            eprintln!("hutch: git: {}: {}", text::shown(&prepared.worktree), text::shown(&prepared.note));
        }
        crate::git::take::save_stamp(&vm_dir, &response.git_stamp);
    }
    let mut links = Vec::new();
    for heavy in &response.heavy {
        match known::<HeavyMethod>("a heavy dir method", heavy.method).map_err(CallError::from)? {
            HeavyMethod::HeavySymlink => links.push(heavy_link(&workspace, &record.heavy_dirs, heavy).map_err(CallError::from)?),
            HeavyMethod::HeavySkipped => {
                eprintln!("hutch: {} stays on the shared folder: {}", text::shown(&heavy.path), text::shown(&heavy.note));
            }
            HeavyMethod::HeavyBind | HeavyMethod::Unspecified => {}
        }
    }
    record.heavy_links = links;
    Ok(())
}

/// A heavy dir the agent made into a symlink in the host project, checked
/// before hutch records it (and removes it at `down`): a path inside the
/// workspace whose name is one of the heavy dirs asked for, and a target
/// that is a path.
fn heavy_link(workspace: &Path, names: &[String], heavy: &HeavyDir) -> Result<HeavyLink, ProtocolError> {
    let path = GuestPath::below(workspace, Path::new(&heavy.path)).map_err(|why| ProtocolError::path(heavy.path.as_bytes(), why))?;
    if !names.iter().any(|name| name.as_bytes() == path.file_name()) {
        return Err(ProtocolError::Unexpected("named a heavy dir that was not asked for"));
    }
    limits::PATH_BYTES.check_len(heavy.local_path.len())?;
    if heavy.local_path.is_empty() || heavy.local_path.contains('\0') {
        return Err(ProtocolError::Unexpected("named a heavy dir's local path that is no path"));
    }
    Ok(HeavyLink { path: workspace.join(path.as_path()), target: heavy.local_path.clone().into() })
}

/// Removes the symlinks `prepare` put into the host project (macOS guests)
/// and the mount points hutch created that are still empty, leaving the
/// project as it was; mount points another running VM of the project still
/// uses wait for the last one (`crate::created_dirs`). A path that is no
/// longer ours is left alone, and so is one outside the workspace or
/// reached through a symlink (a record written by an older hutch may hold
/// what an agent said unchecked).
pub fn remove_links(state: &StateDir, record: &mut VmRecord) {
    let links = std::mem::take(&mut record.heavy_links);
    if let Some(workspace) = &record.workspace
        && !links.is_empty()
    {
        match Beneath::open(workspace) {
            Ok(host) => {
                for link in links {
                    let Ok(path) = GuestPath::below(workspace, &link.path) else {
                        tracing::warn!("not removing {}: outside the workspace", text::shown_bytes(link.path.as_os_str().as_bytes()));
                        continue;
                    };
                    if let Err(e) = host.remove_symlink_to(&path, link.target.as_os_str().as_bytes()) {
                        tracing::warn!("not removing {path}: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot open the workspace to remove its heavy-dir links: {e}"),
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
