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
use super::mounts::Mounts;

/// 9p mount options (the fall-back when the host has no virtiofsd): the
/// virtio transport, the Linux dialect, the largest messages the kernel takes,
/// and no caching but for shared writable memory maps (`cache=mmap`, as fast as
/// `none` in the measurements of docs/benchmarks.md, and tools that map files writable
/// work), so edits on the host are seen in the guest at once. `cache=loose`
/// is 4-10x faster but shows host edits late or never.
#[cfg(target_os = "linux")]
const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=524288,cache=mmap";

/// Makes `workspace` show the shared project. `tart_shares` overrides where
/// Tart shares are found.
pub fn ensure(workspace: &Path, share: &Kind, tart_shares: Option<&Path>, mounts: &dyn Mounts) -> Result<(), PrepareError> {
    match share {
        Kind::MountedAt(at) if Path::new(at) == workspace => {
            std::fs::metadata(workspace).map(|_| ()).map_err(PrepareError::io("the shared workspace is not visible at", workspace))
        }
        Kind::MountedAt(at) => link_or_bind(Path::new(at), workspace, mounts),
        Kind::NinepTag(tag) => mount_share(tag, "9p", workspace, mounts),
        Kind::VirtiofsTag(tag) => mount_share(tag, "virtiofs", workspace, mounts),
        Kind::TartShare(share) => {
            let at = match tart_shares {
                Some(dir) => dir.join(checked_share_name(&share.name)?),
                None => tart_share_path(&share.name, mounts)?,
            };
            // A share that already leads to the workspace path needs nothing.
            if at.canonicalize().is_ok_and(|real| real == workspace) {
                return Ok(());
            }
            link_or_bind(&at, workspace, mounts)
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
fn tart_share_path(name: &str, mounts: &dyn Mounts) -> Result<std::path::PathBuf, PrepareError> {
    let name = checked_share_name(name)?;
    #[cfg(target_os = "linux")]
    {
        let root = Path::new(TART_SHARES_MOUNT);
        mount_share(TART_VIRTIOFS_TAG, "virtiofs", root, mounts)?;
        Ok(root.join(name))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = mounts;
        Ok(Path::new(TART_MACOS_SHARES).join(name))
    }
}

#[cfg(target_os = "linux")]
fn mount_share(tag: &str, fstype: &str, workspace: &Path, mounts: &dyn Mounts) -> Result<(), PrepareError> {
    if mounts.is_mountpoint(workspace) {
        return Ok(());
    }
    std::fs::create_dir_all(workspace).map_err(PrepareError::io("creating", workspace))?;
    let options = (fstype == "9p").then_some(NINEP_OPTIONS);
    mounts.mount_fs(tag, fstype, workspace, options).map_err(|source| PrepareError::Mount {
        what: format!("{fstype} share {tag:?}"),
        path: workspace.to_path_buf(),
        source,
    })
}

#[cfg(not(target_os = "linux"))]
fn mount_share(tag: &str, fstype: &str, _workspace: &Path, _mounts: &dyn Mounts) -> Result<(), PrepareError> {
    Err(PrepareError::Unsupported(format!("{fstype} share {tag:?}: only Linux guests mount shares by tag")))
}

/// Linux: bind-mount the existing mount onto the workspace path.
#[cfg(target_os = "linux")]
fn link_or_bind(at: &Path, workspace: &Path, mounts: &dyn Mounts) -> Result<(), PrepareError> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    if mounts.is_mountpoint(workspace) {
        return Ok(());
    }
    std::fs::create_dir_all(workspace).map_err(PrepareError::io("creating", workspace))?;
    let target = nix::fcntl::open(workspace, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| PrepareError::io("opening", workspace)(e.into()))?;
    mounts.bind(at, workspace, target.as_fd()).map_err(|source| PrepareError::Mount {
        what: format!("a bind of {}", at.display()),
        path: workspace.to_path_buf(),
        source,
    })
}

/// macOS and others: a symlink at the workspace path to where the share is.
#[cfg(not(target_os = "linux"))]
fn link_or_bind(at: &Path, workspace: &Path, _mounts: &dyn Mounts) -> Result<(), PrepareError> {
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use hutch_proto::v1::TartShare;

    use super::super::mounts::fake::{Call, Recorder};
    use super::*;

    #[test]
    fn shares_by_tag_are_mounted_once_at_the_workspace_path() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("home/me/project");
        let mounts = Recorder::default();
        ensure(&ws, &Kind::NinepTag("hutch-ws".into()), None, &mounts).unwrap();
        ensure(&ws, &Kind::NinepTag("hutch-ws".into()), None, &mounts).unwrap();
        let ws2 = dir.path().join("other");
        ensure(&ws2, &Kind::VirtiofsTag("fs0".into()), None, &mounts).unwrap();
        assert_eq!(
            *mounts.calls.borrow(),
            vec![
                Call::Fs("hutch-ws".into(), "9p".into(), ws.clone(), Some(NINEP_OPTIONS.into())),
                Call::Fs("fs0".into(), "virtiofs".into(), ws2, None),
            ]
        );
    }

    #[test]
    fn a_share_mounted_elsewhere_or_a_tart_share_is_bound_onto_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let (elsewhere, shares) = (dir.path().join("mnt/share"), dir.path().join("shares"));
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::create_dir_all(shares.join("workspace")).unwrap();
        let ws = dir.path().join("project");
        let mounts = Recorder::default();
        ensure(&ws, &Kind::MountedAt(elsewhere.display().to_string()), None, &mounts).unwrap();
        let ws2 = dir.path().join("tart-project");
        let share = Kind::TartShare(TartShare { name: "workspace".into(), ..TartShare::default() });
        ensure(&ws2, &share, Some(&shares), &mounts).unwrap();
        assert_eq!(*mounts.calls.borrow(), vec![Call::Bind(elsewhere, ws), Call::Bind(shares.join("workspace"), ws2)]);
        let bad = Kind::TartShare(TartShare { name: "../x".into(), ..TartShare::default() });
        assert!(matches!(ensure(dir.path(), &bad, Some(&shares), &mounts), Err(PrepareError::BadPath(_))));
        // Already visible at its own path: nothing to mount.
        ensure(&shares, &Kind::MountedAt(shares.display().to_string()), None, &mounts).unwrap();
        assert_eq!(mounts.calls.borrow().len(), 2);
    }
}
