//! `Prepare` against a real agent: heavy dirs redirected, host data never
//! hidden or lost, bad requests refused, and a second call changing nothing.

use std::path::Path;

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecRequest, GitRepo, HeavyMethod, PrepareRequest, Start, StdinMode, WorkspaceShare, exec_request, workspace_share};
use hutch_tests::Agent;
use hutch_tests::raw::prepare;

/// An agent whose VM-local storage is `local` and that uses `strategy`.
fn agent_with(local: &Path, strategy: &str) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}", dir.path().join("agent.sock").display());
    let local = local.to_str().unwrap().to_owned();
    Agent::start(dir, addr, None, &["--local-dir", &local, "--heavy-strategy", strategy])
}

/// A request for `ws`, already visible at its own path (as Lima mounts it).
fn request(ws: &Path, heavy: &[&str]) -> PrepareRequest {
    PrepareRequest {
        workspace: ws.display().to_string(),
        share: Some(WorkspaceShare { kind: Some(workspace_share::Kind::MountedAt(ws.display().to_string())) }),
        heavy_dirs: heavy.iter().map(|s| (*s).to_owned()).collect(),
        heavy_depth: 0,
        git: Vec::new(),
    }
}

#[test]
fn symlinked_heavy_dirs_keep_host_data_and_a_second_call_changes_nothing() {
    let (ws, local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::create_dir_all(ws.path().join("apps/web/node_modules")).unwrap();
    std::fs::create_dir(ws.path().join("node_modules")).unwrap(); // as the host creates it for a package.json
    std::fs::create_dir_all(ws.path().join(".venv/lib")).unwrap();
    std::fs::write(ws.path().join(".venv/lib/keep"), "host").unwrap();
    let agent = agent_with(local.path(), "symlink");
    let socket = agent.dir.path().join("agent.sock");

    let first = prepare(&socket, request(ws.path(), &["node_modules", ".venv", ".next"])).expect("prepare");
    let method = |p: &str| first.heavy.iter().find(|h| h.path == ws.path().join(p).display().to_string()).map(|h| h.method);
    assert_eq!(method("node_modules"), Some(HeavyMethod::HeavySymlink as i32));
    assert_eq!(method("apps/web/node_modules"), Some(HeavyMethod::HeavySymlink as i32));
    assert_eq!(method(".venv"), Some(HeavyMethod::HeavySkipped as i32), "a non-empty host dir must not be hidden");
    assert_eq!(std::fs::read_to_string(ws.path().join(".venv/lib/keep")).unwrap(), "host");
    let target = std::fs::read_link(ws.path().join("node_modules")).unwrap();
    assert!(target.starts_with(local.path()), "{}", target.display());
    assert_eq!(method(".next"), None);
    assert!(!ws.path().join(".next").exists(), "a heavy dir the project does not have appeared");

    let second = prepare(&socket, request(ws.path(), &["node_modules", ".venv", ".next"])).expect("second prepare");
    assert_eq!(first, second);
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let local = tempfile::tempdir().unwrap();
    let agent = agent_with(local.path(), "symlink");
    let socket = agent.dir.path().join("agent.sock");
    let err = prepare(&socket, request(Path::new("/tmp/../etc"), &[])).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("absolute, without `..`"), "{}", err.message());
    let mut no_share = request(Path::new("/tmp"), &[]);
    no_share.share = None;
    assert_eq!(prepare(&socket, no_share).unwrap_err().code(), tonic::Code::InvalidArgument);
}

/// Bind mounts need root. CI runs as root, and so does this machine; a run
/// without root fails here, saying so, rather than passing without having
/// mounted anything (`cargo test -- --skip bind_` skips these on purpose).
fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test bind-mounts and needs root (CI runs as root); run as root, or skip it with `cargo test -- --skip bind_`"
    );
}

/// The mount points in this process's mount table at or below `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| Path::new(m).starts_with(dir)).map(str::to_owned).collect()
}

#[test]
fn bind_mounted_heavy_dirs_hide_guest_builds_from_the_host() {
    require_root();
    let (ws, local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let agent = agent_with(local.path(), "bind");
    let socket = agent.dir.path().join("agent.sock");
    let mounted = ws.path().join("target");
    std::fs::create_dir(&mounted).unwrap(); // as the host creates it for a Cargo.toml
    let _unmount = Unmount(mounted.clone());
    let first = prepare(&socket, request(ws.path(), &["target"])).expect("prepare");
    assert_eq!(first.heavy[0].method, HeavyMethod::HeavyBind as i32);
    // What a build writes there lands on VM-local storage.
    std::fs::write(mounted.join("artifact"), "built").unwrap();
    assert_eq!(std::fs::read_to_string(Path::new(&first.heavy[0].local_path).join("artifact")).unwrap(), "built");
    // A second call does not stack a second mount.
    let second = prepare(&socket, request(ws.path(), &["target"])).expect("second prepare");
    assert_eq!(first, second);
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = table.lines().filter(|l| l.split(' ').nth(4) == Some(mounted.to_str().unwrap())).count();
    assert_eq!(mounts, 1, "{table}");
}

#[test]
fn bind_strategy_leaves_symlinked_heavy_dirs_alone() {
    require_root();
    let (ws, local, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (top, nested) = (elsewhere.path().join("top"), elsewhere.path().join("nested"));
    for dir in [&top, &nested] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("keep"), "not the project's").unwrap();
    }
    std::os::unix::fs::symlink(&top, ws.path().join("node_modules")).unwrap();
    std::fs::create_dir_all(ws.path().join("packages/a")).unwrap();
    std::os::unix::fs::symlink(&nested, ws.path().join("packages/a/node_modules")).unwrap();
    let _unmount = [Unmount(top.clone()), Unmount(nested.clone())];
    let agent = agent_with(local.path(), "bind");
    let done = prepare(&agent.dir.path().join("agent.sock"), request(ws.path(), &["node_modules"])).expect("prepare");
    assert_eq!(mounts_under(elsewhere.path()), Vec::<String>::new(), "a heavy dir's symlink was followed and mounted over");
    assert_eq!(mounts_under(ws.path()), Vec::<String>::new());
    for dir in [&top, &nested] {
        assert_eq!(std::fs::read_to_string(dir.join("keep")).unwrap(), "not the project's");
    }
    for rel in ["node_modules", "packages/a/node_modules"] {
        let entry = done.heavy.iter().find(|h| h.path == ws.path().join(rel).display().to_string());
        let entry = entry.unwrap_or_else(|| panic!("{rel} not reported: {done:?}"));
        assert_eq!(entry.method, HeavyMethod::HeavySkipped as i32, "{entry:?}");
        assert!(entry.note.contains("symlink"), "{entry:?}");
    }
}

/// Detaches a test's bind mount however the test ends.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Detaches every mount stacked at a path, however the test ends.
struct UnmountAll(std::path::PathBuf);

impl Drop for UnmountAll {
    fn drop(&mut self) {
        while nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// Runs `script` through the agent; its stdout and the refs stamp of its `Exited`.
fn exec_stamp(socket: &Path, script: &str, cwd: &Path) -> (String, String) {
    let start = Start {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: cwd.display().to_string(),
        stdin: StdinMode::StdinNull as i32,
        ..Start::default()
    };
    let responses = hutch_tests::raw::exec(socket, vec![ExecRequest { kind: Some(exec_request::Kind::Start(start)) }]);
    let stamp = responses.iter().find_map(|r| match &r.kind {
        Some(Kind::Exited(e)) => Some(e.git_stamp.clone()),
        _ => None,
    });
    (String::from_utf8(hutch_tests::raw::stdout_of(&responses)).unwrap(), stamp.expect("an Exited"))
}

#[test]
fn bind_a_guarded_repository_gets_a_gitdir_of_its_own_and_a_refs_stamp() {
    require_root();
    let (root, local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ws = root.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    git(&ws, &["init", "-q"]);
    std::fs::write(ws.join("a.txt"), "one\n").unwrap();
    git(&ws, &["add", "."]);
    git(&ws, &["commit", "-qm", "one"]);
    let host_head = git(&ws, &["rev-parse", "HEAD"]);
    // The host's read-only view of .git, as its namespace shows it to the guest.
    let view = root.path().join("view");
    std::fs::create_dir_all(view.join("objects")).unwrap();
    std::fs::write(view.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(view.join("packed-refs"), format!("{host_head} refs/heads/main\n")).unwrap();
    std::fs::copy(ws.join(".git/index"), view.join("index")).unwrap();
    let bind = |from: &Path, to: &Path| {
        nix::mount::mount(Some(from), to, None::<&str>, nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC, None::<&str>).unwrap()
    };
    let _objects = UnmountAll(view.join("objects"));
    bind(&ws.join(".git/objects"), &view.join("objects"));
    let _dot_git = UnmountAll(ws.join(".git"));
    bind(&view, &ws.join(".git"));

    let agent = agent_with(local.path(), "bind");
    let socket = agent.dir.path().join("agent.sock");
    let mut req = request(&ws, &[]);
    req.share = Some(WorkspaceShare { kind: Some(workspace_share::Kind::MountedAt(ws.display().to_string())) });
    req.git = vec![GitRepo {
        worktree: ws.display().to_string(),
        object_format: "sha1".into(),
        user_name: "Host User".into(),
        user_email: "u@h".into(),
        ..GitRepo::default()
    }];
    let done = prepare(&socket, req.clone()).expect("prepare");
    let _agent_view = UnmountAll(Path::new(&done.git[0].gitdir).parent().unwrap().join("view"));
    assert_eq!(done.git.len(), 1);
    assert!(done.git[0].note.is_empty(), "{:?}", done.git[0]);
    assert_eq!(done.git_stamp.len(), 16);

    // git in the "guest" works on its own gitdir, over the shared worktree.
    let (out, stamp) = exec_stamp(&socket, "git status --porcelain; git log --format=%s; git rev-parse --git-dir", &ws);
    assert_eq!(out, format!("one\n.git\n"));
    assert_eq!(stamp, done.git_stamp, "nothing moved");
    let (_, stamp) = exec_stamp(&socket, "echo two > a.txt && git commit -qam two && git log --format='%s %an'", &ws);
    assert_ne!(stamp, done.git_stamp, "a commit moves the stamp");
    let (out, _) = exec_stamp(&socket, "git log --format='%s %an' -1", &ws);
    assert_eq!(out, "two Host User\n");
    // A second Prepare leaves it as it is.
    let again = prepare(&socket, req).expect("second prepare");
    assert_eq!(again.git, done.git);
    let (out, _) = exec_stamp(&socket, "git log --format=%s -1", &ws);
    assert_eq!(out, "two\n");

    // The host's own repository never saw any of it.
    drop(_agent_view);
    drop(_dot_git);
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]), host_head);
    assert_eq!(git(&ws, &["log", "--format=%s"]), "one");
}
