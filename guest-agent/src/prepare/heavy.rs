//! Heavy artifact dirs (node_modules, target, .venv, ...) on VM-local disk.
//!
//! Building into a shared folder is slow (every write crosses to the host) and
//! pollutes the host with guest-built binaries. Each heavy dir is backed by a
//! folder under `<local_root>/<workspace hash>/<relative path>`:
//! - [`Strategy::Bind`] (Linux guests): that folder is bind-mounted over the
//!   path, which the host sees as an empty dir at most. A heavy dir that is a
//!   symlink (or lies below one) is the project's own and is left alone: a
//!   mount would land on wherever it points, hiding that folder's files. The
//!   path is opened without following symlinks and mounted through that
//!   descriptor ([`Mounts::bind`]);
//! - [`Strategy::Symlink`] (macOS guests, as the VM Sandbox scripts do): the
//!   path becomes a symlink to it; a non-empty host dir is never replaced.
//!
//! Heavy dirs are redirected where they exist: top-level ones (the host
//! creates those a project's manifest implies before it calls `Prepare`, so a
//! first `npm install` lands on local disk, and removes them again when the VM
//! stops), nested ones (`packages/a/node_modules`) when a bounded walk finds
//! them. A name the project does not have leaves no trace.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use hutch_proto::v1::{HeavyDir, HeavyMethod};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::mounts::Mounts;
use super::{Config, PrepareError};
use crate::nofollow::{NotOpened, open_dir};

/// How deep the walk for nested heavy dirs goes by default.
pub const DEFAULT_DEPTH: usize = 4;
/// The walk stops after looking at this many directories (huge monorepos).
const MAX_DIRS_VISITED: usize = 20_000;

/// How heavy dirs are redirected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Bind mounts (Linux guests).
    Bind,
    /// Symlinks (macOS guests).
    Symlink,
}

impl Strategy {
    /// The strategy for the OS this agent runs on.
    pub fn native() -> Strategy {
        if cfg!(target_os = "linux") { Strategy::Bind } else { Strategy::Symlink }
    }
}

/// Redirects every heavy dir of `workspace`; returns what was done to each.
pub fn redirect(
    workspace: &Path,
    names: &[String],
    depth: usize,
    config: &Config,
    mounts: &dyn Mounts,
) -> Result<Vec<HeavyDir>, PrepareError> {
    let names: Vec<&str> = names.iter().map(String::as_str).filter(|n| is_plain_name(n)).collect();
    let local_base = config.local_root.join(workspace_key(workspace));
    // A symlink counts: it is one an earlier Prepare made (macOS guests).
    let mut found: Vec<PathBuf> = names.iter().map(|n| workspace.join(n)).filter(|p| p.symlink_metadata().is_ok()).collect();
    found.extend(nested(workspace, &names, depth)); // nested() never returns top-level dirs
    let mut done = Vec::with_capacity(found.len());
    for path in found {
        let relative = path.strip_prefix(workspace).unwrap_or(&path);
        let local = local_base.join(relative);
        std::fs::create_dir_all(&local).map_err(PrepareError::io("creating", &local))?;
        if let Some((uid, gid)) = config.owner {
            std::os::unix::fs::chown(&local, Some(uid), Some(gid)).map_err(PrepareError::io("giving the command user", &local))?;
        }
        let (method, note) = match config.strategy {
            Strategy::Bind => bind(&local, workspace, relative, mounts)?,
            Strategy::Symlink => symlink(&local, &path)?,
        };
        done.push(HeavyDir { path: path.display().to_string(), local_path: local.display().to_string(), method: method as i32, note });
    }
    Ok(done)
}

/// A heavy-dir name must be one path component (no `/`, not `.`/`..`).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// A stable folder name for a workspace: a 64-bit FNV-1a hash of its path.
pub fn workspace_key(workspace: &Path) -> String {
    let hash = workspace
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// Heavy dirs below the top level, up to `depth` levels down. Does not follow
/// symlinks, and does not look inside `.git` or inside heavy dirs.
fn nested(workspace: &Path, names: &[&str], depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![workspace.to_path_buf()];
    let mut visited = 0;
    for current_depth in 0..depth {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                visited += 1;
                if visited > MAX_DIRS_VISITED {
                    return found;
                }
                let Ok(kind) = entry.file_type() else { continue };
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if names.contains(&name.as_ref()) {
                    // A symlink here is one an earlier Prepare made: keep it in
                    // the answer, so a second call reports the same dirs.
                    if current_depth > 0 && (kind.is_dir() || kind.is_symlink()) {
                        found.push(entry.path());
                    }
                } else if kind.is_dir() && name != ".git" {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    found
}

/// Bind-mounts `local` over the heavy dir at `relative` below `workspace`
/// (creating it if missing), unless it is already mounted, or it (or a
/// folder on the way) is a symlink or not a folder: then it is left alone.
fn bind(local: &Path, workspace: &Path, relative: &Path, mounts: &dyn Mounts) -> Result<(HeavyMethod, String), PrepareError> {
    let path = workspace.join(relative);
    if mounts.is_mountpoint(&path) {
        return Ok((HeavyMethod::HeavyBind, String::new()));
    }
    let target = match open_below(workspace, relative) {
        Ok(fd) => fd,
        Err(NotOpened::Symlink) => return Ok((HeavyMethod::HeavySkipped, "a symlink in the project: left alone, never followed".into())),
        Err(NotOpened::NotAFolder) => return Ok((HeavyMethod::HeavySkipped, "not a folder: left as is".into())),
        Err(NotOpened::Missing) => return Err(PrepareError::io("opening", &path)(std::io::ErrorKind::NotFound.into())),
        Err(NotOpened::Os(e)) => return Err(PrepareError::io("opening", &path)(e.into())),
    };
    mounts.bind(local, &path, target.as_fd()).map_err(|source| match source.kind() {
        std::io::ErrorKind::Unsupported => PrepareError::Unsupported(source.to_string()),
        _ => PrepareError::Mount { what: format!("{} (VM-local)", local.display()), path: path.clone(), source },
    })?;
    Ok((HeavyMethod::HeavyBind, String::new()))
}

/// Opens the folder `relative` below `workspace` one name at a time without
/// following a symlink; the last name is created if missing.
fn open_below(workspace: &Path, relative: &Path) -> Result<OwnedFd, NotOpened> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(workspace, flags, Mode::empty()).map_err(NotOpened::Os)?;
    let names: Vec<&[u8]> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.as_bytes()),
            _ => None,
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        fd = open_dir(fd.as_fd(), name, i + 1 == names.len())?;
    }
    Ok(fd)
}

/// Replaces `path` with a symlink to `local`, unless that would hide host data.
fn symlink(local: &Path, path: &Path) -> Result<(HeavyMethod, String), PrepareError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return match std::fs::read_link(path) {
                Ok(target) if target == local => Ok((HeavyMethod::HeavySymlink, String::new())),
                _ => Ok((HeavyMethod::HeavySkipped, "already a symlink to somewhere else: left as is".into())),
            };
        }
        Ok(meta) if meta.is_dir() => {
            let empty = std::fs::read_dir(path).map_err(PrepareError::io("reading", path))?.next().is_none();
            if !empty {
                return Ok((HeavyMethod::HeavySkipped, "not empty on the host: left as is rather than hidden".into()));
            }
            std::fs::remove_dir(path).map_err(PrepareError::io("removing the empty", path))?;
        }
        Ok(_) => return Ok((HeavyMethod::HeavySkipped, "a file, not a directory: left as is".into())),
        Err(_) => {}
    }
    std::os::unix::fs::symlink(local, path).map_err(PrepareError::io("linking", path))?;
    Ok((HeavyMethod::HeavySymlink, String::new()))
}

#[cfg(test)]
mod tests {
    use super::super::mounts::fake::{Call, Recorder};
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn symlinks_redirect_top_level_and_nested_dirs_but_never_hide_host_data() {
        let ws = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("packages/a/node_modules")).unwrap();
        std::fs::create_dir_all(ws.path().join("packages/b/src")).unwrap();
        std::fs::create_dir_all(ws.path().join("target/debug")).unwrap(); // host data: keep
        std::fs::create_dir_all(ws.path().join(".git/node_modules")).unwrap(); // never looked at
        std::fs::create_dir(ws.path().join("node_modules")).unwrap(); // created by the host for the guest
        let config = Config { local_root: local.path().to_path_buf(), strategy: Strategy::Symlink, tart_shares: None, owner: None };
        let mounts = Recorder::default();
        let first = redirect(ws.path(), &names(&["node_modules", "target", ".venv", "../evil"]), DEFAULT_DEPTH, &config, &mounts).unwrap();
        let by_path = |p: &str| {
            first.iter().find(|h| h.path == ws.path().join(p).display().to_string()).unwrap_or_else(|| panic!("{p} not handled: {first:?}"))
        };
        assert_eq!(by_path("node_modules").method, HeavyMethod::HeavySymlink as i32);
        assert_eq!(by_path("packages/a/node_modules").method, HeavyMethod::HeavySymlink as i32);
        assert_eq!(by_path("target").method, HeavyMethod::HeavySkipped as i32);
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(!ws.path().join(".venv").exists(), "a name the project does not have leaves no trace");
        assert!(ws.path().join("target/debug").is_dir());
        assert!(std::fs::symlink_metadata(ws.path().join(".git/node_modules")).unwrap().is_dir());
        let link = std::fs::read_link(ws.path().join("packages/a/node_modules")).unwrap();
        assert!(link.starts_with(local.path()));

        // Idempotent: the same answer, nothing new on disk.
        let second = redirect(ws.path(), &names(&["node_modules", "target", ".venv"]), DEFAULT_DEPTH, &config, &mounts).unwrap();
        assert_eq!(first, second);
        assert_eq!(mounts.calls.borrow().len(), 0, "the symlink strategy mounts nothing");
    }

    #[test]
    fn binds_mount_over_real_folders_only_and_once() {
        let ws = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("target/debug")).unwrap();
        std::fs::create_dir_all(ws.path().join("apps/web/node_modules")).unwrap();
        std::fs::create_dir_all(ws.path().join("apps/api")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), ws.path().join("node_modules")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), ws.path().join("apps/api/node_modules")).unwrap();
        std::fs::write(ws.path().join(".venv"), "a file").unwrap();
        let config = Config { local_root: local.path().to_path_buf(), strategy: Strategy::Bind, tart_shares: None, owner: None };
        let mounts = Recorder::default();
        let heavy = names(&["node_modules", "target", ".venv", ".next"]);
        let first = redirect(ws.path(), &heavy, DEFAULT_DEPTH, &config, &mounts).unwrap();
        let method = |rel: &str| {
            let entry = first.iter().find(|h| h.path == ws.path().join(rel).display().to_string());
            entry.map(|h| (HeavyMethod::try_from(h.method).unwrap(), h.note.contains("symlink")))
        };
        assert_eq!(method("node_modules"), Some((HeavyMethod::HeavySkipped, true)));
        assert_eq!(method("apps/api/node_modules"), Some((HeavyMethod::HeavySkipped, true)));
        assert_eq!(method(".venv"), Some((HeavyMethod::HeavySkipped, false)));
        assert_eq!(method("target"), Some((HeavyMethod::HeavyBind, false)));
        assert_eq!(method(".next"), None, "a missing heavy dir is left alone (the host creates the ones a project uses)");
        assert_eq!(method("apps/web/node_modules"), Some((HeavyMethod::HeavyBind, false)));
        assert!(!ws.path().join(".next").exists());
        let bound: Vec<PathBuf> = mounts
            .calls
            .borrow()
            .iter()
            .map(|c| match c {
                Call::Bind(source, target) => {
                    assert!(source.starts_with(local.path()), "{c:?}");
                    target.clone()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bound.len(), 2, "{bound:?}");
        assert!(bound.iter().all(|t| !t.starts_with(elsewhere.path())));

        // A second Prepare finds them mounted and mounts nothing more.
        let second = redirect(ws.path(), &heavy, DEFAULT_DEPTH, &config, &mounts).unwrap();
        assert_eq!(first, second);
        assert_eq!(mounts.calls.borrow().len(), 2);
    }

    #[test]
    fn workspace_keys_are_stable_and_distinct() {
        assert_eq!(workspace_key(Path::new("/a/b")), workspace_key(Path::new("/a/b")));
        assert_ne!(workspace_key(Path::new("/a/b")), workspace_key(Path::new("/a/c")));
        assert_eq!(workspace_key(Path::new("/a/b")).len(), 16);
    }
}
