//! Settings of the host's own git configuration that hand control to files
//! in the project, which the guest can write: the guard covers `.git`, not
//! what the user's configuration chose to run from the worktree.
//!
//! Named at `hutch up` (once per start), never changed: a `core.hooksPath`
//! inside the project (husky's `.husky/_`), an `include.path` that reads a
//! worktree file (or any setting read from one), and a command-valued
//! setting (`core.fsmonitor`, `filter.*.clean`, `diff.*.textconv`, an
//! `alias.*` running `!…`) whose program is a path in the project. Running
//! such a hook is like running the project's `make`: the guest chose what
//! it does.

use std::path::{Path, PathBuf};

use super::host_git::Repo;
use crate::untrusted::text::shown_bytes as shown;

/// Settings whose value is a command line.
fn is_command(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "core.fsmonitor",
        "core.pager",
        "core.editor",
        "core.sshcommand",
        "core.askpass",
        "sequence.editor",
        "diff.external",
        "credential.helper",
        "gpg.program",
        "interactive.difffilter",
        "uploadpack.packobjectshook",
    ];
    let suffix = |s: &str| key.ends_with(s);
    EXACT.contains(&key)
        || key.starts_with("alias.")
        || key.starts_with("pager.")
        || (key.starts_with("diff.") && (suffix(".command") || suffix(".textconv")))
        || (key.starts_with("merge.") && suffix(".driver"))
        || (key.starts_with("filter.") && (suffix(".clean") || suffix(".smudge") || suffix(".process")))
        || (key.starts_with("gpg.") && suffix(".program"))
        || (key.starts_with("credential.") && suffix(".helper"))
}

/// One note per setting of `repo`'s configuration (all scopes) that runs
/// or reads something from `workspace`.
pub fn scan(repo: &Repo, workspace: &Path) -> Vec<String> {
    let Ok(listed) = repo.run(&["config", "--list", "--show-origin", "-z"]) else { return Vec::new() };
    let base = repo.worktree.clone().unwrap_or_else(|| repo.gitdir.clone());
    let mut notes = Vec::new();
    let mut fields = listed.split(|&b| b == 0);
    while let (Some(origin), Some(entry)) = (fields.next(), fields.next()) {
        let origin = String::from_utf8_lossy(origin);
        let entry = String::from_utf8_lossy(entry);
        let (key, value) = entry.split_once('\n').unwrap_or((&entry, ""));
        let from = origin.strip_prefix("file:").map(|f| base.join(f));
        let shown_from =
            from.as_ref().map(|f| format!(" (from {})", shown(relative(f, workspace).as_os_str().as_encoded_bytes()))).unwrap_or_default();
        let setting = format!("{} = {}{shown_from}", shown(key.as_bytes()), shown(value.as_bytes()));
        if let Some(file) = &from
            && in_project(file, workspace)
        {
            notes.push(format!("git on this host reads settings from a project file, which the guest can change: {setting}"));
            continue;
        }
        let runs_from_project = if key == "core.hookspath" {
            in_project(&resolve(value, &base), workspace)
        } else if key == "include.path" || (key.starts_with("includeif.") && key.ends_with(".path")) {
            let dir = from.as_ref().and_then(|f| f.parent().map(Path::to_path_buf)).unwrap_or_else(|| base.clone());
            in_project(&resolve(value, &dir), workspace)
        } else if is_command(key) {
            value
                .trim_start_matches('!')
                .split_whitespace()
                .filter(|token| token.contains('/') && !token.starts_with('~'))
                .any(|token| in_project(&resolve(token.trim_matches(|c| c == '"' || c == '\''), &base), workspace))
        } else {
            false
        };
        if runs_from_project {
            notes.push(format!("git on this host runs or reads a file of the project, which the guest can change: {setting}"));
        }
    }
    notes
}

/// `value` as a path: absolute as it is, else relative to `dir`.
fn resolve(value: &str, dir: &Path) -> PathBuf {
    let path = Path::new(value);
    if path.is_absolute() { path.to_path_buf() } else { dir.join(path) }
}

/// Inside the workspace and not inside a `.git` (which the guard covers).
fn in_project(path: &Path, workspace: &Path) -> bool {
    let normal = super::normalize(path);
    normal.starts_with(workspace) && !normal.components().any(|c| c.as_os_str() == ".git")
}

fn relative(path: &Path, workspace: &Path) -> PathBuf {
    let path = super::normalize(path);
    path.strip_prefix(workspace).map(Path::to_path_buf).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn settings_that_run_or_read_project_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        let git = |args: &[&str]| assert!(Command::new("git").args(args).current_dir(ws).status().unwrap().success());
        git(&["init", "-q"]);
        git(&["config", "core.hooksPath", ".husky/_"]);
        git(&["config", "filter.lfs.clean", "git-lfs clean -- %f"]);
        git(&["config", "diff.bin.textconv", "./tools/textconv.sh"]);
        git(&["config", "alias.st", "status"]);
        git(&["config", "include.path", "../project.gitconfig"]);
        std::fs::write(ws.join("project.gitconfig"), "[alias]\n\tlg = log\n").unwrap();
        let notes = scan(&Repo::new(ws.join(".git"), Some(ws.to_path_buf())), ws);
        let text = notes.join("\n");
        assert!(text.contains("core.hookspath = .husky/_"), "{text}");
        assert!(text.contains("diff.bin.textconv = ./tools/textconv.sh"), "{text}");
        assert!(text.contains("include.path = ../project.gitconfig"), "{text}");
        assert!(text.contains("alias.lg = log (from project.gitconfig)"), "{text}");
        assert!(!text.contains("filter.lfs") && !text.contains("alias.st"), "{text}");
    }
}
