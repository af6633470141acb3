//! Making the host's project appear at the host's own absolute path.
//!
//! | share | Linux guest | macOS guest |
//! |---|---|---|
//! | 9p tag | `mount -t 9p` at the path | unsupported |
//! | virtiofs tag | `mount -t virtiofs` at the path | unsupported |
//! | already mounted elsewhere | bind mount onto the path | symlink at the path |
//!
//! Every step first checks whether it is already done, so it can be repeated.

use std::path::Path;

use hutch_proto::v1::workspace_share::Kind;

use super::PrepareError;
use super::mounts::is_mountpoint;

/// 9p mount options: the virtio transport, the Linux dialect, large messages,
/// and no caching, so edits on the host are seen in the guest at once.
#[cfg(target_os = "linux")]
const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=524288,cache=none";

/// Makes `workspace` show the shared project.
pub fn ensure(workspace: &Path, share: &Kind) -> Result<(), PrepareError> {
    match share {
        Kind::MountedAt(at) if Path::new(at) == workspace => {
            std::fs::metadata(workspace).map(|_| ()).map_err(PrepareError::io("the shared workspace is not visible at", workspace))
        }
        Kind::MountedAt(at) => link_or_bind(Path::new(at), workspace),
        Kind::NinepTag(tag) => mount_share(tag, "9p", workspace),
        Kind::VirtiofsTag(tag) => mount_share(tag, "virtiofs", workspace),
    }
}

#[cfg(target_os = "linux")]
fn mount_share(tag: &str, fstype: &str, workspace: &Path) -> Result<(), PrepareError> {
    use nix::mount::{MsFlags, mount};
    if is_mountpoint(workspace) {
        return Ok(());
    }
    std::fs::create_dir_all(workspace).map_err(PrepareError::io("creating", workspace))?;
    let options = (fstype == "9p").then_some(NINEP_OPTIONS);
    mount(Some(tag), workspace, Some(fstype), MsFlags::empty(), options).map_err(|e| PrepareError::Mount {
        what: format!("{fstype} share {tag:?}"),
        path: workspace.to_path_buf(),
        source: e.into(),
    })
}

#[cfg(not(target_os = "linux"))]
fn mount_share(tag: &str, fstype: &str, _workspace: &Path) -> Result<(), PrepareError> {
    Err(PrepareError::Unsupported(format!("{fstype} share {tag:?}: only Linux guests mount shares by tag")))
}

/// Linux: bind-mount the existing mount onto the workspace path.
#[cfg(target_os = "linux")]
fn link_or_bind(at: &Path, workspace: &Path) -> Result<(), PrepareError> {
    use nix::mount::{MsFlags, mount};
    if is_mountpoint(workspace) {
        return Ok(());
    }
    std::fs::create_dir_all(workspace).map_err(PrepareError::io("creating", workspace))?;
    mount(Some(at), workspace, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| PrepareError::Mount {
        what: format!("a bind of {}", at.display()),
        path: workspace.to_path_buf(),
        source: e.into(),
    })
}

/// macOS and others: a symlink at the workspace path to where the share is.
#[cfg(not(target_os = "linux"))]
fn link_or_bind(at: &Path, workspace: &Path) -> Result<(), PrepareError> {
    match std::fs::read_link(workspace) {
        Ok(target) if target == at => return Ok(()),
        Ok(_) | Err(_) if workspace.symlink_metadata().is_ok() => {
            return Err(PrepareError::Unsupported(format!("{} exists in the guest and is not a link to the share", workspace.display())));
        }
        _ => {}
    }
    if let Some(parent) = workspace.parent() {
        std::fs::create_dir_all(parent).map_err(PrepareError::io("creating", parent))?;
    }
    std::os::unix::fs::symlink(at, workspace).map_err(PrepareError::io("linking", workspace))
}
