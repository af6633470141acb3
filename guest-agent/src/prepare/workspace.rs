//! Making the host's project appear at the host's own absolute path.
//!
//! | share | Linux guest | macOS guest |
//! |---|---|---|
//! | 9p tag | `mount -t 9p` at the path | unsupported |
//! | virtiofs tag | `mount -t virtiofs` at the path (the host's virtiofsd chose the caching) | unsupported |
//! | already mounted elsewhere | bind mount onto the path | symlink at the path |
//! | Tart `--dir` share | virtiofs tag, then bind its subfolder | symlink to `/Volumes/My Shared Files/NAME` |
//!
//! Every step first checks whether it is already done, so it can be repeated.

use std::path::Path;

use hutch_proto::v1::workspace_share::Kind;

use super::PrepareError;
use super::mounts::is_mountpoint;

/// 9p mount options (the fall-back when the host has no virtiofsd): the
/// virtio transport, the Linux dialect, the largest messages the kernel takes,
/// and no caching but for shared writable memory maps (`cache=mmap`, as fast as
/// `none` in the README's measurements, and tools that map files writable
/// work), so edits on the host are seen in the guest at once. `cache=loose`
/// is 4-10x faster but shows host edits late or never.
#[cfg(target_os = "linux")]
const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=524288,cache=mmap";

/// Makes `workspace` show the shared project. `tart_shares` overrides where
/// Tart shares are found.
pub fn ensure(workspace: &Path, share: &Kind, tart_shares: Option<&Path>) -> Result<(), PrepareError> {
    match share {
        Kind::MountedAt(at) if Path::new(at) == workspace => {
            std::fs::metadata(workspace).map(|_| ()).map_err(PrepareError::io("the shared workspace is not visible at", workspace))
        }
        Kind::MountedAt(at) => link_or_bind(Path::new(at), workspace),
        Kind::NinepTag(tag) => mount_share(tag, "9p", workspace),
        Kind::VirtiofsTag(tag) => mount_share(tag, "virtiofs", workspace),
        Kind::TartShare(share) => {
            let at = match tart_shares {
                Some(dir) => dir.join(checked_share_name(&share.name)?),
                None => tart_share_path(&share.name)?,
            };
            // A share that already leads to the workspace path needs nothing.
            if at.canonicalize().is_ok_and(|real| real == workspace) {
                return Ok(());
            }
            link_or_bind(&at, workspace)
        }
    }
}

/// A share name must be one path component.
fn checked_share_name(name: &str) -> Result<&str, PrepareError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(PrepareError::BadPath(name.to_owned()));
    }
    Ok(name)
}

/// Where macOS guests find `tart run --dir` shares.
#[cfg(not(target_os = "linux"))]
const TART_MACOS_SHARES: &str = "/Volumes/My Shared Files";

/// The virtiofs tag under which Linux guests of Tart find every `--dir` share.
#[cfg(target_os = "linux")]
const TART_VIRTIOFS_TAG: &str = "com.apple.virtio-fs.automount";

/// Where a Linux guest mounts Tart's share tag (each share is a subfolder).
#[cfg(target_os = "linux")]
const TART_SHARES_MOUNT: &str = "/run/hutch/tart-shares";

/// The guest path of Tart share `name`, mounting Tart's share tag first on
/// Linux guests.
fn tart_share_path(name: &str) -> Result<std::path::PathBuf, PrepareError> {
    let name = checked_share_name(name)?;
    #[cfg(target_os = "linux")]
    {
        let root = Path::new(TART_SHARES_MOUNT);
        mount_share(TART_VIRTIOFS_TAG, "virtiofs", root)?;
        Ok(root.join(name))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(Path::new(TART_MACOS_SHARES).join(name))
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
