//! `--ro` snapshots end to end on this machine: the real `hutch sync`/`diff`/
//! `exec` against a real agent that keeps its snapshot under a private prefix.
//! After every sync the snapshot must equal the host tree as `rsync -a
//! --delete` leaves it: contents, modes, symlinks and mtimes.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use hutch_tests::snapshot::{SnapshotAgent, assert_same, listing};
use hutch_tests::{code, stderr, stdout};

fn write(root: &Path, rel: &str, data: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn sync_ok(s: &SnapshotAgent, args: &[&str]) -> String {
    let out = s.hutch("sync", args);
    assert_eq!(code(&out), 0, "hutch sync failed: {}", stderr(&out));
    stderr(&out)
}

/// A tree with the awkward cases: nested, executable, empty, symlinks,
/// non-ASCII and long names, an empty folder, a read-only folder.
fn sample_tree(root: &Path) {
    write(root, "README.md", "hello\n");
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "src/deep/er/still/file.txt", "deep\n");
    write(root, "bin/run.sh", "#!/bin/sh\necho run\n");
    std::fs::set_permissions(root.join("bin/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write(root, "empty", "");
    write(root, "ünïcode name.txt", "u\n");
    let long = format!("{}/{}.txt", "d".repeat(90), "f".repeat(120));
    write(root, &long, "long\n");
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    write(root, "ro/file", "ro\n");
    std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    symlink("README.md", root.join("link")).unwrap();
    symlink("/etc/hostname", root.join("abs-link")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
}

#[test]
fn initial_copy_and_resyncs_make_the_trees_equal() {
    let s = SnapshotAgent::start();
    let root = s.root();
    sample_tree(&root);
    let said = sync_ok(&s, &[]);
    assert!(said.contains("copied"), "{said}");
    let snap = s.snapshot(&root);
    assert_same(&listing(&root, &[]), &listing(&snap, &[]));

    // Add, modify (same size too), delete, rename, chmod, retarget a symlink,
    // a folder becoming a file and a file becoming a folder.
    write(&root, "new/added.txt", "added\n");
    write(&root, "README.md", "HELLO\n");
    std::fs::remove_file(root.join("empty")).unwrap();
    std::fs::rename(root.join("src/main.rs"), root.join("src/lib.rs")).unwrap();
    std::fs::set_permissions(root.join("src/lib.rs"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(root.join("link")).unwrap();
    symlink("src/lib.rs", root.join("link")).unwrap();
    std::fs::remove_dir_all(root.join("src/deep")).unwrap();
    write(&root, "src/deep", "now a file\n");
    std::fs::remove_file(root.join("ünïcode name.txt")).unwrap();
    write(&root, "ünïcode name.txt/inside", "now a folder\n");
    sync_ok(&s, &[]);
    assert_same(&listing(&root, &[]), &listing(&snap, &[]));

    let said = sync_ok(&s, &[]);
    assert!(said.contains("up to date"), "a second sync found work: {said}");
    std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn guest_changes_are_reset_but_ignored_guest_files_stay() {
    let s = SnapshotAgent::start();
    let root = s.root();
    write(&root, ".gitignore", "build/\n");
    write(&root, "a.txt", "host\n");
    write(&root, "b.txt", "keep me\n");
    sync_ok(&s, &[]);
    let snap = s.snapshot(&root);
    write(&snap, "a.txt", "guest edit\n");
    std::fs::remove_file(snap.join("b.txt")).unwrap();
    write(&snap, "stray.txt", "guest file\n");
    std::fs::set_permissions(snap.join("a.txt"), std::fs::Permissions::from_mode(0o777)).unwrap();
    write(&snap, "build/out.o", "guest build output\n");
    sync_ok(&s, &[]);
    assert_same(&listing(&root, &[]), &listing(&snap, &["build"]));
    assert_eq!(std::fs::read_to_string(snap.join("build/out.o")).unwrap(), "guest build output\n", "an ignored guest file was deleted");
}

#[test]
fn ignore_files_and_git_follow_the_flags() {
    let s = SnapshotAgent::start();
    let root = s.root();
    write(&root, ".gitignore", "*.log\ntarget/\n");
    write(&root, "sub/.hutchignore", "secret.txt\n");
    write(&root, "sub/secret.txt", "s\n");
    write(&root, "sub/public.txt", "p\n");
    write(&root, "x.log", "log\n");
    write(&root, "target/big.bin", "bin\n");
    write(&root, ".git/HEAD", "ref: refs/heads/main\n");
    write(&root, ".hidden", "dotfiles are copied\n");
    let snap = s.snapshot(&root);

    sync_ok(&s, &[]);
    let skipped = [".git", "x.log", "target", "sub/secret.txt"];
    let mut host = listing(&root, &skipped);
    let mut guest = listing(&snap, &[]);
    // Folders whose ignored children were left out keep the host's mtime anyway.
    host.remove(".");
    guest.remove(".");
    assert_same(&host, &guest);

    sync_ok(&s, &["--ro-git"]);
    assert_eq!(std::fs::read_to_string(snap.join(".git/HEAD")).unwrap(), "ref: refs/heads/main\n");
    assert!(!snap.join("x.log").exists());

    sync_ok(&s, &["--ro-git", "--no-ignore"]);
    assert_same(&listing(&root, &[]), &listing(&snap, &[]));
}

#[test]
fn diff_round_trips_through_git_apply() {
    let s = SnapshotAgent::start();
    let root = s.root();
    write(&root, "keep.txt", "one\ntwo\nthree\n");
    write(&root, "edit.txt", "alpha\nbeta\ngamma\n");
    write(&root, "gone.txt", "bye\n");
    write(&root, "tool.sh", "#!/bin/sh\n");
    write(&root, "noeol.txt", "no newline");
    sync_ok(&s, &[]);
    let snap = s.snapshot(&root);
    write(&snap, "edit.txt", "alpha\nBETA\ngamma\ndelta\n");
    std::fs::remove_file(snap.join("gone.txt")).unwrap();
    write(&snap, "dir/new.txt", "brand new\n");
    write(&snap, "noeol.txt", "no newline, still");
    std::fs::set_permissions(snap.join("tool.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&snap, "blob.bin", "\0\x01binary");

    let out = s.hutch("diff", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let patch = stdout(&out);
    assert!(patch.contains("Binary files /dev/null and b/blob.bin differ"), "{patch}");
    assert!(patch.contains("deleted file mode 100644"), "{patch}");
    assert!(patch.contains("new file mode 100644"), "{patch}");
    assert!(patch.contains("old mode 100644\nnew mode 100755"), "{patch}");

    // git apply cannot take a binary note: apply the text part, copy the blob by hand.
    let text_only: String =
        patch.split("diff --git ").filter(|p| !p.is_empty() && !p.contains("Binary files")).map(|p| format!("diff --git {p}")).collect();
    let copy = s.host.path().join("copy");
    let status = Command::new("cp").arg("-a").arg(&root).arg(&copy).status().unwrap();
    assert!(status.success());
    let patch_file = s.host.path().join("guest.patch");
    std::fs::write(&patch_file, &text_only).unwrap();
    let applied = Command::new("git").arg("apply").arg(&patch_file).current_dir(&copy).output().unwrap();
    assert!(applied.status.success(), "git apply failed: {}\n{text_only}", String::from_utf8_lossy(&applied.stderr));
    std::fs::copy(snap.join("blob.bin"), copy.join("blob.bin")).unwrap();
    let contents = |dir: &Path| -> Vec<(String, String)> {
        listing(dir, &[])
            .into_iter()
            .filter(|(_, v)| v.starts_with("file"))
            .map(|(k, v)| (k, v.rsplit_once(" @").unwrap().0.to_owned()))
            .collect()
    };
    assert_eq!(contents(&copy), contents(&snap));

    // After a sync the guest equals the host again: nothing to diff.
    sync_ok(&s, &[]);
    let out = s.hutch("diff", &[]);
    assert_eq!(stdout(&out), "", "{}", stderr(&out));
}

#[test]
fn diff_never_carries_a_change_under_a_dot_git() {
    let s = SnapshotAgent::start();
    let root = s.root();
    write(&root, ".git/HEAD", "ref: refs/heads/main\n");
    write(&root, ".git/config", "[core]\n");
    write(&root, "vendor/lib/.git/config", "[core]\n");
    write(&root, "src.txt", "one\n");
    sync_ok(&s, &["--ro-git"]);
    let snap = s.snapshot(&root);
    // A --ro-git guest plants a hook and config for the host's next git command.
    write(&snap, ".git/hooks/post-checkout", "#!/bin/sh\ntouch /tmp/pwned\n");
    write(&snap, ".git/config", "[core]\n\tfsmonitor = ./evil\n");
    write(&snap, "vendor/lib/.git/config", "[core]\n\tpager = ./evil\n");
    write(&snap, "src.txt", "two\n");

    let out = s.hutch("diff", &["--ro-git"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let patch = stdout(&out);
    assert!(patch.contains("a/src.txt") && !patch.contains(".git/"), "{patch}");
    let err = stderr(&out);
    for path in [".git/hooks/post-checkout", ".git/config", "vendor/lib/.git/config"] {
        assert!(err.contains(&format!("{path}: the guest changed a file inside .git; hutch never patches .git")), "{err}");
    }
}

#[test]
fn exec_resyncs_a_ro_vm_first() {
    let s = SnapshotAgent::start();
    let root = s.root();
    write(&root, "greeting", "hello\n");
    let state = s.host.path().join("state");
    let vm = state.join("vms/rovm");
    std::fs::create_dir_all(&vm).unwrap();
    let record = serde_json::json!({
        "version": 1, "name": "rovm", "backend": "qemu", "addr": s.agent.addr, "workspace": root,
        "image": "/none", "cpus": 1, "memory_mib": 64, "created_unix": 1, "ro": { "git": false },
    });
    std::fs::write(vm.join("vm.json"), record.to_string()).unwrap();
    let snap = s.snapshot(&root);
    let cat = |s: &SnapshotAgent| {
        let out = s
            .agent
            .hutch()
            .env("HUTCH_STATE_DIR", &state)
            .env_remove("HUTCH_ADDR")
            .args(["exec", "--name", "rovm", "--", "cat"])
            .arg(snap.join("greeting"))
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(cat(&s), "hello\n");
    write(&root, "greeting", "changed on the host\n");
    assert_eq!(cat(&s), "changed on the host\n");

    let out = s
        .agent
        .hutch()
        .env("HUTCH_STATE_DIR", &state)
        .env_remove("HUTCH_ADDR")
        .args(["sync", "--name", "rovm", "--json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sent"], 0);
}

#[test]
fn a_30k_file_tree_syncs() {
    let s = SnapshotAgent::start();
    let root = s.root();
    for d in 0..300 {
        let dir = root.join(format!("pkg{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d} {f}\n")).unwrap();
        }
    }
    sync_ok(&s, &["-q"]);
    let snap = s.snapshot(&root);
    assert_same(&listing(&root, &[]), &listing(&snap, &[]));
    for i in 0..10 {
        write(&root, &format!("pkg{:03}/f000.txt", i * 7), "changed\n");
    }
    let out = s.hutch("sync", &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Rewritten in place: the folders' mtimes stay, only the files go.
    assert_eq!(report["sent"], 10, "{report}");
    assert_same(&listing(&root, &[]), &listing(&snap, &[]));
}
