//! Running git on the host, on the user's repositories, for the guard.
//!
//! The user's configuration is trusted (it is theirs), but hutch's own git
//! commands must not run anything a worktree file could have changed: a
//! `core.hooksPath` pointing into the project (husky's `.husky/_`) would
//! otherwise run guest-written hooks when hutch updates a ref. So every
//! command hutch runs gets `core.hooksPath=/dev/null` and
//! `core.fsmonitor=false`, never prompts, and runs with the repository named
//! explicitly (`GIT_DIR`, `GIT_WORK_TREE`) and none of the variables that
//! could point git elsewhere inherited from hutch's environment.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::GitError;

/// Variables of hutch's environment that would change which repository, or
/// which configuration, a git command uses.
const SCRUBBED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_PROTOCOL",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_EXTERNAL_DIFF",
    "GIT_PAGER",
    "GIT_EDITOR",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "GIT_TRACE",
];

/// Settings on every command hutch runs, whatever the user's configuration.
const SAFE: &[&str] = &["core.hooksPath=/dev/null", "core.fsmonitor=false", "core.pager=cat", "gc.auto=0", "maintenance.auto=false"];

/// Bytes of git's error output shown in an error.
const SHOWN_ERROR_BYTES: usize = 400;

/// One repository, as host git commands address it.
#[derive(Clone, Debug)]
pub struct Repo {
    /// Its gitdir.
    pub gitdir: PathBuf,
    /// Its worktree, for commands that need one.
    pub worktree: Option<PathBuf>,
}

impl Repo {
    /// A repository by its gitdir and worktree.
    pub fn new(gitdir: impl Into<PathBuf>, worktree: Option<PathBuf>) -> Repo {
        Repo { gitdir: gitdir.into(), worktree }
    }

    /// `git ARGS` in this repository, with hutch's safe settings.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new("git");
        for setting in SAFE {
            cmd.arg("-c").arg(setting);
        }
        cmd.args(args);
        for name in SCRUBBED {
            cmd.env_remove(name);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("GIT_CONFIG_KEY_") || k.starts_with("GIT_CONFIG_VALUE_")) {
                cmd.env_remove(key);
            }
        }
        cmd.env("GIT_DIR", &self.gitdir).env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null());
        match &self.worktree {
            Some(worktree) => {
                cmd.env("GIT_WORK_TREE", worktree).current_dir(worktree);
            }
            None => {
                cmd.current_dir(&self.gitdir);
            }
        }
        cmd
    }

    /// Runs `git ARGS` and returns its stdout; a failure carries its error output.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Vec<u8>, GitError> {
        let out = self.command(args).output().map_err(GitError::NoGit)?;
        self.checked(args, out)
    }

    /// [`Repo::run`] as text (lossy), trailing newline removed.
    pub fn text<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, GitError> {
        let out = self.run(args)?;
        Ok(String::from_utf8_lossy(&out).trim_end_matches('\n').to_owned())
    }

    /// Whether `git ARGS` succeeds (for questions such as `merge-base
    /// --is-ancestor`); a git that cannot run is an error.
    pub fn succeeds<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<bool, GitError> {
        let status = self.command(args).stdout(Stdio::null()).stderr(Stdio::null()).status().map_err(GitError::NoGit)?;
        Ok(status.success())
    }

    /// The output of a command run elsewhere (with input, or with extra
    /// environment), checked like [`Repo::run`]'s.
    pub fn checked<S: AsRef<OsStr>>(&self, args: &[S], out: Output) -> Result<Vec<u8>, GitError> {
        if out.status.success() {
            return Ok(out.stdout);
        }
        // git's error output relays what the guest's git said: escaped.
        let why = crate::untrusted::text::shown_bytes(&out.stderr[out.stderr.len().saturating_sub(SHOWN_ERROR_BYTES)..]);
        let why = if why.trim().is_empty() { out.status.to_string() } else { why.trim().to_owned() };
        Err(GitError::Git { args: args_text(args), dir: self.worktree.clone().unwrap_or_else(|| self.gitdir.clone()), why })
    }
}

/// Arguments as shown in an error.
fn args_text<S: AsRef<OsStr>>(args: &[S]) -> String {
    crate::untrusted::text::shown(&args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_and_the_fsmonitor_never_run_and_errors_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        let plain = |args: &[&str]| assert!(Command::new("git").args(args).current_dir(ws).status().unwrap().success());
        plain(&["init", "-q"]);
        let canary = ws.join("canary");
        let hook = format!("#!/bin/sh\ntouch {}\n", canary.display());
        std::fs::create_dir_all(ws.join("hooks-in-project")).unwrap();
        for name in ["hooks-in-project/reference-transaction", ".git/hooks/reference-transaction", "fsmonitor"] {
            std::fs::write(ws.join(name), &hook).unwrap();
            std::fs::set_permissions(ws.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        plain(&["config", "core.hooksPath", "hooks-in-project"]);
        plain(&["config", "core.fsmonitor", "./fsmonitor"]);
        let repo = Repo::new(ws.join(".git"), Some(ws.to_path_buf()));
        repo.run(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"]).unwrap();
        repo.run(&["update-ref", "refs/heads/other", "HEAD"]).unwrap();
        repo.run(&["status", "--porcelain"]).unwrap();
        assert!(!canary.exists(), "a hook or the fsmonitor ran");

        let err = repo.run(&["rev-parse", "--verify", "no\x1b]0;title\x07such"]).unwrap_err().to_string();
        assert!(!err.contains('\x1b') && err.contains("\\u{1b}"), "{err}");
    }
}
