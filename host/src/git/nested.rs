//! Repositories the guest creates inside the project, where the host had
//! none when the VM started: they are files in the worktree like any other,
//! and host git would use their configuration (hooks, `core.fsmonitor`…) if
//! the user ran git inside one. hutch cannot refuse them without refusing
//! the guest folders of its own, so it names them, once, when it takes the
//! guest's commits (after a command that changed refs, at `hutch down`).

use std::path::Path;

use super::guard::{Guard, walk_nested};

/// One note per `.git` below the workspace that the guard did not put
/// there or cover.
pub fn notes(guard: &Guard) -> Vec<String> {
    let known = guard.known_git_entries();
    let (found, _) = walk_nested(&guard.workspace, &[]);
    found
        .iter()
        .map(|dir| dir.join(".git"))
        .filter(|dot_git| !known.contains(dot_git))
        .map(|dot_git| {
            let shown = crate::untrusted::text::shown_bytes(relative(&dot_git, &guard.workspace).as_os_str().as_encoded_bytes());
            format!(
                "the guest made a repository at {shown}: git on this host would run its hooks and configuration there; look at it (or delete it) before running git in that folder"
            )
        })
        .collect()
}

fn relative<'a>(path: &'a Path, workspace: &Path) -> &'a Path {
    path.strip_prefix(workspace).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_repositories_the_guard_does_not_know_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        std::fs::create_dir_all(ws.join("known/.git")).unwrap();
        std::fs::create_dir_all(ws.join("a/b/planted/.git")).unwrap();
        let guard = Guard {
            workspace: ws.to_path_buf(),
            mounts: vec![
                super::super::guard::Mount::Pin { path: ws.join("known") },
                super::super::guard::Mount::ReadOnly { path: ws.join("known/.git") },
                super::super::guard::Mount::Pin { path: ws.join("a") },
            ],
            ..Guard::default()
        };
        let notes = notes(&guard);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("a/b/planted/.git"), "{notes:?}");
    }
}
