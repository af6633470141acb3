//! The folders hutch made in a project as heavy dirs' mount points
//! (`crate::heavy`), which must go again when the *last* VM sharing the
//! project stops, not the first.
//!
//! Several VMs can share one project at once: a warm pool's ready VMs, the
//! children of a fork, concurrent `run --rm`s. Each bind-mounts its own
//! VM-local dir over the same (empty) folder. If one of them removed that
//! folder on its way out, the others' guests would drop their mounts at the
//! next lookup (the kernel detaches mounts on a dentry that disappears), and
//! their next `npm install` would land in the host project. So a VM that
//! stops while another VM of the same project still runs leaves its folders
//! behind in the project's list (`$state/created/PROJECT.json`); the last
//! one to stop removes every folder of the list that is still empty.

use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::backend::VmState;
use crate::state::{StateDir, VmRecord, default_name};

/// Removes `dirs` (made for VM `record`'s project), and those other VMs of
/// the project left, if no other VM of the project runs; otherwise keeps
/// them all for the last one. Best effort: a folder that cannot be removed
/// now stays.
pub fn release(state: &StateDir, record: &VmRecord, dirs: Vec<PathBuf>) {
    let Some(workspace) = &record.workspace else {
        crate::heavy::remove_mount_points(&dirs);
        return;
    };
    let list = list_path(state, workspace);
    // The common case (a project with no heavy dirs to make): nothing to do,
    // no VM manager to ask about the others.
    if dirs.is_empty() && !list.exists() {
        return;
    }
    let Some(_lock) = lock(&list) else {
        crate::heavy::remove_mount_points(&dirs);
        return;
    };
    let mut all = read(&list);
    all.extend(dirs.into_iter().filter(|d| d.starts_with(workspace)));
    all.sort();
    all.dedup();
    if others_running(state, record, workspace) {
        write(&list, &all);
    } else {
        crate::heavy::remove_mount_points(&all);
        let _ = std::fs::remove_file(&list);
    }
}

/// Whether a VM other than `record` that shares `workspace` runs.
fn others_running(state: &StateDir, record: &VmRecord, workspace: &Path) -> bool {
    state.list().unwrap_or_default().into_iter().filter_map(|(_, r)| r.ok()).any(|other| {
        other.name != record.name
            && other.workspace.as_deref() == Some(workspace)
            && other.started_unix.is_some()
            && crate::backend::for_kind(other.kind(), state)
                .is_ok_and(|b| matches!(b.state(&other, &state.vm_dir(&other.name)), Ok(VmState::Running)))
    })
}

fn list_path(state: &StateDir, workspace: &Path) -> PathBuf {
    state.root().join("created").join(format!("{}.json", default_name(workspace)))
}

/// An exclusive lock on the list's folder entry (`PROJECT.json.lock`).
fn lock(list: &Path) -> Option<Flock<std::fs::File>> {
    std::fs::create_dir_all(list.parent()?).ok()?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(list.with_extension("lock")).ok()?;
    Flock::lock(file, FlockArg::LockExclusive).ok()
}

fn read(list: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(list).ok().and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default()
}

fn write(list: &Path, dirs: &[PathBuf]) {
    let tmp = list.with_extension(format!("{}.tmp", std::process::id()));
    let text = serde_json::to_string(dirs).unwrap_or_else(|_| "[]".into());
    if std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, list)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::VmSpec;
    use crate::backend::fake::spec;
    use crate::state::{BackendState, QemuState, VmName};

    /// A QEMU VM record `name` of `workspace`; "running" when a `qemu`
    /// daemon holds its log's lock (the backend's own test of it).
    fn vm(state: &StateDir, name: &str, workspace: &Path, running: bool) -> (VmRecord, Option<crate::daemon::Claim>) {
        let spec = VmSpec { workspace: Some(workspace.to_path_buf()), ..spec(name, None) };
        let mut record = spec.record("img".into(), None, BackendState::Qemu(QemuState::default()));
        record.started_unix = running.then_some(1);
        let dir = state.create_vm_dir(&VmName::new(name).unwrap()).unwrap();
        record.save(&dir).unwrap();
        let claim = running.then(|| crate::daemon::Daemon::new(&dir, "qemu").claim().unwrap().unwrap());
        (record, claim)
    }

    #[test]
    fn the_last_vm_of_a_project_removes_the_mount_points_the_others_left() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().join("state"));
        let ws = dir.path().join("ws");
        let mount_point = ws.join("node_modules");
        std::fs::create_dir_all(&mount_point).unwrap();
        let (first, _) = vm(&state, "first", &ws, false);
        let (_second, second_runs) = vm(&state, "second", &ws, true);

        // The second still runs (and uses it): the folder stays.
        release(&state, &first, vec![mount_point.clone()]);
        assert!(mount_point.is_dir());
        // The second stops: it removes what the first left, though it did not make it.
        drop(second_runs);
        let (second, _) = vm(&state, "second", &ws, false);
        release(&state, &second, Vec::new());
        assert!(!mount_point.exists());
        assert!(!list_path(&state, &ws).exists());
    }
}
