//! `GitState`: the guest's repositories as they are now, so the host can say
//! what of them never reaches it (hooks and configuration of the guest's
//! own; a repository the guest made where the host has none).

use std::path::Path;

use hutch_proto::v1::{GitRepoState, GitStateResponse};

use super::registry::{self, Guarded};

/// Hook names reported per gitdir (git knows about 30 hook names).
const MAX_HOOKS: usize = 64;
/// Largest configuration compared with hutch's copy.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Describes every registered gitdir.
pub fn describe() -> GitStateResponse {
    let entries = registry::entries();
    let repos = entries.iter().map(repo_state).collect();
    GitStateResponse { repos, stamp: registry::stamp() }
}

fn repo_state(guarded: &Guarded) -> GitRepoState {
    let local = &guarded.local;
    GitRepoState {
        worktree: guarded.worktree.display().to_string(),
        gitdir: guarded.visible.display().to_string(),
        hooks: hooks(&local.join("hooks")),
        config_changed: guarded.seeded_config.as_deref().is_some_and(|seeded| config_changed(&local.join("config"), seeded)),
        attributes: local.join("info/attributes").exists(),
        empty: guarded.is_empty_kind(),
        has_commits: guarded.is_empty_kind() && has_commits(local),
    }
}

/// Names of the hooks installed in `dir` (git's `.sample` files are not hooks).
fn hooks(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".sample"))
        .map(|name| crate::untrusted::shown_str(&name))
        .take(MAX_HOOKS)
        .collect();
    names.sort();
    names
}

fn config_changed(config: &Path, seeded: &Path) -> bool {
    let read = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        (meta.len() <= MAX_CONFIG_BYTES).then(|| std::fs::read(path).ok()).flatten()
    };
    match (read(config), read(seeded)) {
        (Some(now), Some(then)) => now != then,
        _ => true,
    }
}

/// Whether the guest's own repository (in a workspace the host keeps none
/// in) has a branch: any loose ref, or a packed-refs file.
fn has_commits(gitdir: &Path) -> bool {
    let packed = std::fs::metadata(gitdir.join("packed-refs")).is_ok_and(|m| m.len() > 0);
    let loose = std::fs::read_dir(gitdir.join("refs/heads")).is_ok_and(|mut e| e.next().is_some());
    packed || loose
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_config_and_commits_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("dir");
        std::fs::create_dir_all(local.join("hooks")).unwrap();
        std::fs::create_dir_all(local.join("info")).unwrap();
        std::fs::write(local.join("hooks/pre-commit.sample"), "").unwrap();
        std::fs::write(local.join("hooks/post-commit"), "").unwrap();
        std::fs::write(local.join("hooks/pre-push\x1b[2J"), "").unwrap();
        std::fs::write(local.join("config"), "[core]\n").unwrap();
        let seeded = dir.path().join("config.seeded");
        std::fs::write(&seeded, "[core]\n").unwrap();
        let guarded = Guarded { worktree: "/w".into(), visible: "/w/.git".into(), local: local.clone(), seeded_config: Some(seeded) };
        let state = repo_state(&guarded);
        assert_eq!(state.hooks, ["post-commit", "pre-push\\u{1b}[2J"]);
        assert!(!state.config_changed && !state.attributes && !state.empty);
        std::fs::write(local.join("config"), "[core]\n\thooksPath = /tmp\n").unwrap();
        std::fs::write(local.join("info/attributes"), "* diff=x\n").unwrap();
        let state = repo_state(&guarded);
        assert!(state.config_changed && state.attributes);

        let empty = Guarded { seeded_config: None, ..guarded };
        assert!(!repo_state(&empty).has_commits);
        std::fs::create_dir_all(local.join("refs/heads")).unwrap();
        std::fs::write(local.join("refs/heads/main"), "x\n").unwrap();
        assert!(repo_state(&empty).has_commits);
    }
}
