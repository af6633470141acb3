//! Which heavy dirs a project uses, so the host project shows mount points
//! only for those, and only while a VM runs.
//!
//! The guest agent keeps a heavy dir on VM-local disk when it exists in the
//! project. Before asking it to, hutch creates the top-level ones the project
//! uses but does not have yet (so a first `npm install` in the guest lands on
//! VM-local disk): a built-in name when a marker file implies it
//! (`package.json` → `node_modules`, `Cargo.toml` → `target`, …), a name the
//! user added (`--heavy`, `heavy`) always. It records what it created, and
//! `down`, `rm` and the end of `run --rm` remove those again if they are
//! still empty, once no other VM of the project runs (`crate::created_dirs`).
//! A folder with no marker is left exactly as it was.

use std::path::{Path, PathBuf};

/// Built-in heavy dirs and the top-level files that imply each.
/// `requirements*.txt` is matched as a pattern (see [`implied`]).
const MARKERS: &[(&str, &[&str])] = &[
    ("node_modules", &["package.json"]),
    (".next", &["next.config.js", "next.config.mjs", "next.config.cjs", "next.config.ts"]),
    (".svelte-kit", &["svelte.config.js", "svelte.config.mjs", "svelte.config.cjs", "svelte.config.ts"]),
    (".venv", &["pyproject.toml", "setup.py", "setup.cfg", "Pipfile", "uv.lock", "poetry.lock", "requirements*.txt"]),
    ("target", &["Cargo.toml", "pom.xml", "build.sbt"]),
];

/// Whether the project at `workspace` uses the heavy dir `name`: a marker of
/// a built-in name is there, or `name` is not built in (the user named it).
pub fn implied(workspace: &Path, name: &str) -> bool {
    let Some((_, markers)) = MARKERS.iter().find(|(dir, _)| *dir == name) else { return true };
    markers.iter().any(|marker| match marker.split_once('*') {
        None => workspace.join(marker).is_file(),
        Some((prefix, suffix)) => std::fs::read_dir(workspace).into_iter().flatten().flatten().any(|entry| {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            file.starts_with(prefix) && file.ends_with(suffix) && entry.path().is_file()
        }),
    })
}

/// Creates the top-level heavy dirs of `names` that the project uses but
/// does not have; returns those it created.
pub fn create_mount_points(workspace: &Path, names: &[String]) -> std::io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for name in names.iter().filter(|n| is_plain_name(n)) {
        let path = workspace.join(name);
        if path.symlink_metadata().is_ok() || !implied(workspace, name) {
            continue;
        }
        match std::fs::create_dir(&path) {
            Ok(()) => created.push(path),
            // Made meanwhile (by the running guest, through the share): not ours.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Removes the mount points hutch created that are still empty (a folder
/// something wrote into stays, and so does anything that is no longer a folder).
pub fn remove_mount_points(created: &[PathBuf]) {
    for path in created {
        if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_dir(path); // fails, as it should, when not empty
        }
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn markers_decide_which_built_in_dirs_appear() {
        let ws = tempfile::tempdir().unwrap();
        let all = names(&["node_modules", ".next", ".svelte-kit", ".venv", "target"]);
        assert!(create_mount_points(ws.path(), &all).unwrap().is_empty(), "no markers, nothing created");
        assert_eq!(std::fs::read_dir(ws.path()).unwrap().count(), 0);

        std::fs::write(ws.path().join("package.json"), "{}").unwrap();
        std::fs::write(ws.path().join("requirements-dev.txt"), "").unwrap();
        std::fs::create_dir(ws.path().join("target")).unwrap(); // exists already: not ours
        let created = create_mount_points(ws.path(), &all).unwrap();
        assert_eq!(created, [ws.path().join("node_modules"), ws.path().join(".venv")]);
        assert!(create_mount_points(ws.path(), &all).unwrap().is_empty(), "a second call creates nothing");

        // Names the user added are always created; odd names never.
        let created = create_mount_points(ws.path(), &names(&["dist", "../x", "a/b"])).unwrap();
        assert_eq!(created, [ws.path().join("dist")]);
    }

    #[test]
    fn only_empty_mount_points_are_removed() {
        let ws = tempfile::tempdir().unwrap();
        let (empty, used, gone) = (ws.path().join("node_modules"), ws.path().join(".venv"), ws.path().join("target"));
        std::fs::create_dir(&empty).unwrap();
        std::fs::create_dir(&used).unwrap();
        std::fs::write(used.join("pyvenv.cfg"), "").unwrap();
        remove_mount_points(&[empty.clone(), used.clone(), gone]);
        assert!(!empty.exists());
        assert!(used.join("pyvenv.cfg").exists());
    }
}
