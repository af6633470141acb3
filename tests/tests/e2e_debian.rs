//! End to end in real QEMU guests booted from the default Debian image (the
//! suite's own build: `cargo xtask e2e` adds Claude Code from npm and a setup
//! hook to it, as a user's `[image]` table and `hooks.setup` would). Ignored
//! by a plain `cargo test`; sequential: each guest is a TCG emulator.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hutch_tests::vm::e2e;
use hutch_tests::{code, stderr, stdout};

fn up(name: &str, workspace: &Path, extra: &[&str]) {
    let image = e2e().debian().to_str().unwrap().to_owned();
    let mut args = vec!["up", "--name", name, "--image", &image, "--workspace", workspace.to_str().unwrap(), "--cpus", "1"];
    args.extend_from_slice(extra);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "hutch up failed:\n{}", stderr(&out));
}

fn exec(name: &str, script: &str) -> Output {
    e2e().run(&["exec", "--name", name, "--", "sh", "-c", script])
}

fn exec_ok(name: &str, script: &str) -> String {
    let out = exec(name, script);
    assert_eq!(code(&out), 0, "{script}\n{}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
#[ignore = "needs QEMU and the Debian image: run `cargo xtask e2e`"]
fn the_default_image_is_a_userland_for_coding_agents_on_its_own_disk() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("package.json"), "{\"name\":\"e2e\",\"version\":\"1.0.0\"}\n").unwrap();
    up("e2e-debian", ws.path(), &["--disk", "24G"]);

    // Debian's tools, npm from its release, the npm CLI and the setup hook the
    // image was built with; hutch's init as PID 1; no network device.
    let script = "node -e 'console.log(6 * 7)'; npm --version; python3 -m venv /tmp/venv && /tmp/venv/bin/python -c 'print(\"venv ok\")'; \
                  curl --version | head -1 | cut -d' ' -f1; claude --version >/dev/null && echo claude ok; cat /etc/hutch-e2e-setup; \
                  cat /proc/1/comm; ls /sys/class/net; uname -n";
    let out = exec_ok("e2e-debian", script);
    assert_eq!(
        out, "42\n10.9.9\nvenv ok\ncurl\nclaude ok\nsetup hook ran as root\nhutch-agent\nlo\nhutch-guest\n",
        "the Debian userland is incomplete"
    );

    // The project comes over virtio-fs (virtiofsd is installed), mounted by the agent under hutch's init.
    let out = exec_ok("e2e-debian", "awk -v d=\"$PWD\" '$2 == d { print $3 }' /proc/mounts");
    assert_eq!(out, "virtiofs\n", "the workspace is not shared over virtio-fs");

    // git works in the project; what the guest writes there is the host user's.
    let out = exec_ok(
        "e2e-debian",
        "git init -q && git -c user.email=e2e@hutch -c user.name=e2e commit -q --allow-empty -m first && git log --oneline | wc -l",
    );
    assert_eq!(out.trim(), "1");
    exec_ok("e2e-debian", "echo hi > made-in-guest");
    assert_eq!(std::fs::metadata(ws.path().join("made-in-guest")).unwrap().uid(), nix::unistd::getuid().as_raw());

    // node_modules (implied by package.json) is on the VM's disk, not the host's.
    assert!(entries(&ws.path().join("node_modules")).is_empty(), "the host shows an empty mount point while the VM runs");
    let out = exec_ok(
        "e2e-debian",
        "mkdir -p node_modules/pkg && echo built > node_modules/pkg/out && stat -f -c %T node_modules && df --output=source node_modules | tail -1",
    );
    assert_eq!(out, "ext2/ext3\n/dev/vda\n", "node_modules is not on the VM disk");
    assert!(entries(&ws.path().join("node_modules")).is_empty(), "guest node_modules leaked to the host");
    assert!(!ws.path().join(".venv").exists() && !ws.path().join("target").exists(), "heavy dirs the project does not use appeared");

    // The VM's disk is the size asked for, and its file system grows to fill it (in the background).
    assert_eq!(exec_ok("e2e-debian", "cat /sys/class/block/vda/size").trim(), (24u64 << 30 >> 9).to_string());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let size: u64 = exec_ok("e2e-debian", "df -B1 --output=size / | tail -1").trim().parse().unwrap();
        if size > 22 << 30 {
            break;
        }
        assert!(Instant::now() < deadline, "the root file system stayed at {size} bytes");
        std::thread::sleep(Duration::from_millis(500)); // polling a condition with a deadline, not synchronising
    }

    // Written data survives down/up (a clean power-off flushed it); the empty
    // mount point hutch made is gone while the VM is down.
    assert_eq!(code(&e2e().run(&["down", "e2e-debian"])), 0);
    assert!(!ws.path().join("node_modules").exists(), "an empty mount point stayed after down");
    up("e2e-debian", ws.path(), &[]);
    assert_eq!(exec_ok("e2e-debian", "cat node_modules/pkg/out"), "built\n");
    assert_eq!(code(&e2e().run(&["rm", "-f", "e2e-debian"])), 0);
    assert_eq!(entries(ws.path()), [".git", "made-in-guest", "package.json"], "rm left something in the project");
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/e2e-debian/")), "left running: {:?}", e2e().vm_processes());
}

/// Whether every folder above `path` lets others through and `path` lets them read.
fn reachable_by_others(path: &Path) -> bool {
    let readable = path.metadata().is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
    readable && path.ancestors().skip(1).all(|dir| dir.metadata().is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// `path` where another user can read it: itself, or a copy (sparse) in `dir`.
fn for_others(path: &Path, dir: &Path) -> PathBuf {
    if reachable_by_others(path) {
        return path.to_path_buf();
    }
    let copy = dir.join(path.file_name().unwrap());
    let status = Command::new("cp").arg("-rL").arg("--sparse=always").arg(path).arg(&copy).status().unwrap();
    assert!(status.success(), "copying {}", path.display());
    Command::new("chmod").arg("-R").arg("a+rX").arg(&copy).status().unwrap();
    copy
}

#[test]
#[ignore = "needs QEMU and the Debian image: run `cargo xtask e2e`"]
fn commands_run_as_an_unprivileged_user_with_the_host_users_ids() {
    // As root (CI), hutch itself runs as another uid for this test; otherwise as the user running it.
    let root = nix::unistd::geteuid().is_root();
    let uid = if root { 4242 } else { nix::unistd::getuid().as_raw() };
    let gid = if root { 4343 } else { nix::unistd::getgid().as_raw() };
    let home = tempfile::Builder::new().prefix("he2e-user").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (state, ws) = (home.path().join("state"), home.path().join("ws"));
    for dir in [&state, &ws] {
        std::fs::create_dir(dir).unwrap();
    }
    std::fs::write(ws.join("package.json"), "{}\n").unwrap();
    let tools = home.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    let hutch = for_others(&hutch_tests::binaries().hutch, &tools);
    let image = for_others(e2e().debian(), &tools);
    let vsock =
        Command::new("sh").args(["-c", "command -v vhost-device-vsock || echo $HOME/.cargo/bin/vhost-device-vsock"]).output().unwrap();
    let vsock = for_others(Path::new(stdout(&vsock).trim()), &tools);
    if root {
        Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(&state).arg(&ws).status().unwrap();
    }

    let run = |flags: &[&str], script: &str| {
        let mut cmd = Command::new(&hutch);
        cmd.args([
            "run",
            "--rm",
            "--image",
            image.to_str().unwrap(),
            "--workspace",
            ws.to_str().unwrap(),
            "--cpus",
            "1",
            "--memory",
            "512",
        ])
        .args(flags)
        .args(["--", "sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("HUTCH_STATE_DIR", &state)
        .env("HUTCH_VHOST_DEVICE_VSOCK", &vsock)
        .stdin(Stdio::null());
        if root {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
        }
        let out = cmd.output().unwrap();
        assert_eq!(code(&out), 0, "{script}\n{}\n{}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    let out =
        run(&[], "id -u; id -g; id -un; echo $HOME; touch from-guest; mkdir node_modules/made-by-user && sudo -n true && echo sudo ok");
    assert_eq!(out, format!("{uid}\n{gid}\nhutch\n/home/hutch\nsudo ok\n"));
    let made = std::fs::metadata(ws.join("from-guest")).unwrap();
    assert_eq!((made.uid(), made.gid()), (uid, gid), "a file the guest made is not the host user's");
    // A --ro snapshot is the user's to edit too (and the host's file stays as it was).
    let out = run(&["--ro"], "echo more >> package.json && mkdir new && stat -c %u:%g package.json . new");
    assert_eq!(out, format!("{uid}:{gid}\n").repeat(3));
    assert_eq!(std::fs::read_to_string(ws.join("package.json")).unwrap(), "{}\n");
    assert_eq!(entries(&ws), ["from-guest", "package.json"], "run --rm left something in the project");
}
