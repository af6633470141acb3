//! The mount namespace the workspace's file server runs in: where the
//! guard's read-only binds are made, on the host, out of the guest's reach.
//!
//! `hutch guard-exec --guard FILE -- PROGRAM ARGS…` (hidden; the QEMU backend
//! starts virtiofsd, or QEMU itself when the share is 9p, through it):
//! enters a new mount namespace (inside a new user namespace mapping only
//! the caller's own ids when not root), makes every mount private (nothing
//! propagates back to the host), makes the guard's mounts in order, and
//! execs PROGRAM, which keeps its pid, log and lock (see `crate::daemon`).
//! virtiofsd's own sandbox then clones this tree, binds included, into its
//! namespaces; in a user namespace the binds' read-only flag is locked, so
//! not even virtiofsd could lift it. The guest only ever speaks FUSE or 9p
//! to the file server: no request it sends mounts or unmounts anything.
//!
//! Every path inside the project is opened one component at a time without
//! following symlinks, and mounted through its descriptor
//! (`/proc/self/fd/N`), as runc does: a symlink put in the project (by an
//! earlier, unguarded guest) fails the start instead of redirecting a bind.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use nix::fcntl::{OFlag, open, openat};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::Mode;

use super::GitError;
use super::guard::{Guard, Mount};

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "guard-exec";

/// A command that runs `program` in the guard's namespace when the VM in
/// `vm_dir` has a guard, and `program` itself otherwise.
pub fn command(program: &Path, vm_dir: &Path) -> Result<Command, GitError> {
    let guard = Guard::path(vm_dir);
    if !guard.exists() {
        return Ok(Command::new(program));
    }
    let hutch = std::env::current_exe().map_err(GitError::io("finding hutch's own program", Path::new("/proc/self/exe")))?;
    let mut cmd = Command::new(hutch);
    cmd.arg(SUBCOMMAND).arg("--guard").arg(guard).arg("--").arg(program);
    Ok(cmd)
}

/// Checks that this host lets hutch make the namespace (a user namespace
/// too when not root), in a child process that does only that.
pub fn probe() -> Result<(), GitError> {
    // SAFETY: the child only calls unshare(2) and _exit(2), both
    // async-signal-safe, so forking a threaded process is sound.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let code = i32::from(unshare(flags()).is_err());
            // SAFETY: _exit(2) ends the forked child without running the
            // parent's atexit handlers or flushing its buffers twice.
            unsafe { nix::libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            _ => Err(GitError::NoNamespace(crate::userns::obstacle().unwrap_or_else(|| {
                "unshare(2) of a mount namespace failed (a container without CAP_SYS_ADMIN, or user namespaces turned off)".into()
            }))),
        },
        Err(e) => Err(GitError::NoNamespace(format!("fork: {e}"))),
    }
}

fn flags() -> CloneFlags {
    if nix::unistd::geteuid().is_root() { CloneFlags::CLONE_NEWNS } else { CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUSER }
}

/// `hutch guard-exec`: enters the namespace, mounts, and execs `program`.
/// Returns only on failure. Must run before any other thread exists (a
/// threaded process cannot enter a new user namespace).
pub fn run(guard_file: &Path, program: &OsString, args: &[OsString]) -> GitError {
    let text = match std::fs::read(guard_file) {
        Ok(text) => text,
        Err(e) => return GitError::io("reading", guard_file)(e),
    };
    let guard: Guard = match serde_json::from_slice(&text) {
        Ok(guard) => guard,
        Err(e) => return GitError::BadGuardFile { path: guard_file.to_path_buf(), why: e.to_string() },
    };
    if let Err(e) = enter() {
        return e;
    }
    for m in &guard.mounts {
        if let Err(e) = apply(m, &guard.workspace) {
            return e;
        }
    }
    let e = Command::new(program).args(args).exec();
    GitError::io("starting", Path::new(program))(e)
}

/// A new mount namespace (in a new user namespace mapping only our own ids
/// when not root), with every mount private.
fn enter() -> Result<(), GitError> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    unshare(flags()).map_err(|e| GitError::NoNamespace(format!("unshare: {e}")))?;
    if !uid.is_root() {
        let write = |file: &str, text: String| std::fs::write(file, text).map_err(GitError::io("writing", Path::new(file)));
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
        write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    }
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|source| GitError::Mount { path: "/".into(), source })
}

/// Makes one of the guard's mounts.
fn apply(m: &Mount, workspace: &Path) -> Result<(), GitError> {
    match m {
        Mount::Pin { path } => bind(path, path, workspace, false, false),
        Mount::ReadOnly { path } => bind(path, path, workspace, false, true),
        Mount::Bind { source, target } => bind(source, target, workspace, true, true),
    }
}

fn bind(source: &Path, target: &Path, workspace: &Path, recursive: bool, read_only: bool) -> Result<(), GitError> {
    fn failed(path: &Path) -> impl FnOnce(nix::Error) -> GitError + '_ {
        move |source| GitError::Mount { path: path.to_path_buf(), source }
    }
    let from = open_guarded(source, workspace).map_err(failed(source))?;
    let to = open_guarded(target, workspace).map_err(failed(target))?;
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(&fd_path(&from)), &fd_path(&to), None::<&str>, flags, None::<&str>).map_err(failed(target))?;
    if read_only {
        // The descriptor still names what was under the new mount: open the
        // path again to reach the mount itself.
        let mounted = open_guarded(target, workspace).map_err(failed(target))?;
        let kept = kept_flags(&mounted);
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | kept;
        mount(None::<&str>, &fd_path(&mounted), None::<&str>, flags, None::<&str>).map_err(failed(target))?;
    }
    Ok(())
}

/// The flags a remount must keep: in a user namespace, those the mount
/// already has are locked, and a remount without them is refused.
fn kept_flags(fd: &OwnedFd) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, fstatvfs};
    let Ok(stat) = fstatvfs(fd) else { return MsFlags::empty() };
    let on = stat.flags();
    let mut kept = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if on.contains(fs) {
            kept |= ms;
        }
    }
    kept
}

/// Opens `path` as an `O_PATH` descriptor: below the workspace one component
/// at a time without following symlinks (a symlink anywhere is refused);
/// elsewhere (hutch's own state folder) as the path says.
fn open_guarded(path: &Path, workspace: &Path) -> Result<OwnedFd, nix::Error> {
    let Ok(relative) = path.strip_prefix(workspace) else {
        return open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty());
    };
    let mut fd = open(workspace, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    for part in relative.components() {
        let Component::Normal(name) = part else { return Err(nix::Error::EINVAL) };
        fd = openat(fd.as_fd(), name.as_bytes(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
        let stat = nix::sys::stat::fstat(fd.as_fd())?;
        if stat.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK {
            return Err(nix::Error::ELOOP);
        }
    }
    Ok(fd)
}

/// The descriptor's `/proc` link, which mount(2) resolves to the file itself.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_guard_the_program_runs_as_itself() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = command(Path::new("/usr/bin/virtiofsd"), dir.path()).unwrap();
        assert_eq!(cmd.get_program(), "/usr/bin/virtiofsd");
        Guard::default().save(dir.path()).unwrap();
        let cmd = command(Path::new("/usr/bin/virtiofsd"), dir.path()).unwrap();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[0], SUBCOMMAND);
        assert_eq!(args[3..], ["--".to_owned(), "/usr/bin/virtiofsd".to_owned()]);
    }

    #[test]
    fn paths_in_the_project_never_go_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("real/.git")).unwrap();
        std::os::unix::fs::symlink(dir.path(), ws.join("link")).unwrap();
        assert!(open_guarded(&ws.join("real/.git"), &ws).is_ok());
        assert_eq!(open_guarded(&ws.join("link/ws"), &ws).err(), Some(nix::Error::ELOOP));
        assert_eq!(open_guarded(&ws.join("link"), &ws).err(), Some(nix::Error::ELOOP));
    }
}
