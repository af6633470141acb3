//! `Prepare` against a real agent: heavy dirs redirected, host data never
//! hidden or lost, bad requests refused, and a second call changing nothing.

use std::path::Path;

use hutch_proto::v1::{HeavyMethod, PrepareRequest, WorkspaceShare, workspace_share};
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
