//! End to end in real QEMU guests: `cargo xtask e2e` builds the image and runs
//! these (they are ignored by a plain `cargo test`, which has no VM).
//! Sequential (--test-threads=1): each guest is a CPU-hungry TCG emulator.

use std::io::Write;
use std::process::Stdio;

use hutch_tests::pty::OnPty;
use hutch_tests::vm::e2e;
use hutch_tests::{PROMPT, code, pseudo_random, stderr, stdout};

const SMALL: &[&str] = &["--cpus", "1", "--memory", "256"];

fn up(name: &str, workspace: &std::path::Path) {
    let ws = workspace.to_str().unwrap();
    let mut args = vec!["up", "--name", name, "--workspace", ws];
    args.extend_from_slice(SMALL);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "hutch up failed:\n{}", stderr(&out));
}

fn rm(name: &str) {
    let out = e2e().run(&["rm", "-f", name]);
    assert_eq!(code(&out), 0, "hutch rm failed:\n{}", stderr(&out));
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn a_booted_guest_runs_commands_with_exact_codes_output_and_terminals() {
    // A path with a space: the agent mounts the share there itself.
    let ws = tempfile::Builder::new().prefix("ws e2e").tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("package.json"), "{}\n").unwrap(); // so node_modules is a heavy dir
    std::fs::create_dir_all(ws.path().join("packages/a/node_modules")).unwrap();
    std::fs::write(ws.path().join("packages/a/node_modules/from-host"), "host data").unwrap();
    up("e2e-main", ws.path());
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "--name", "e2e-main", "--"];
        all.extend_from_slice(args);
        e2e().run(&all)
    };

    // It really is the guest.
    let out = exec(&["uname", "-n"]);
    assert_eq!((code(&out), stdout(&out).trim()), (0, "hutch-guest"), "{}", stderr(&out));

    // Exit codes and signals.
    assert_eq!(code(&exec(&["true"])), 0);
    assert_eq!(code(&exec(&["sh", "-c", "exit 7"])), 7);
    assert_eq!(code(&exec(&["sh", "-c", "kill -TERM $$"])), 143);
    assert_eq!(code(&exec(&["no-such-command"])), 127);
    assert_eq!(code(&exec(&["/etc/passwd"])), 126);

    // stdin EOF.
    let mut child =
        e2e().hutch().args(["exec", "--name", "e2e-main", "--", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!((code(&out), out.stdout.as_slice()), (0, b"abc".as_slice()));

    // 10 MB of binary output, byte-exact (the file reaches the guest through the share).
    let data = pseudo_random(10 * 1024 * 1024, 99);
    let file = ws.path().join("ten-mb.bin");
    std::fs::write(&file, &data).unwrap();
    let out = exec(&["cat", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == data, "10 MB differ: got {} bytes", out.stdout.len());

    // A file the guest writes into the share is on the host, at the same path.
    let created = ws.path().join("from-guest.txt");
    let script = format!("cd '{}' && pwd && echo written-in-guest > from-guest.txt", ws.path().display());
    let out = exec(&["sh", "-c", &script]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), ws.path().to_str().unwrap());
    assert_eq!(std::fs::read_to_string(&created).unwrap(), "written-in-guest\n");

    // Heavy dirs live on VM-local disk: the guest's node_modules never reaches
    // the host, and a nested one hides (without touching) the host's files.
    let script = "mkdir -p node_modules/pkg && echo built > node_modules/pkg/out && ls -A packages/a/node_modules && echo listed";
    let out = exec(&["sh", "-c", script]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "listed\n"), "{}", stderr(&out));
    let host_node_modules: Vec<_> = std::fs::read_dir(ws.path().join("node_modules")).unwrap().collect();
    assert!(host_node_modules.is_empty(), "guest node_modules leaked to the host: {host_node_modules:?}");
    assert_eq!(std::fs::read_to_string(ws.path().join("packages/a/node_modules/from-host")).unwrap(), "host data");
    let out = exec(&["cat", "node_modules/pkg/out"]);
    assert_eq!(stdout(&out), "built\n", "commands start in the workspace: {}", stderr(&out));

    // A terminal of the local size, and a resize that reaches the guest.
    let mut cmd = e2e().hutch();
    let script = "stty size; trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 1 & wait $!; done";
    cmd.args(["exec", "--name", "e2e-main", "--", "sh", "-c", script]);
    let mut run = OnPty::spawn(cmd, 33, 101);
    run.wait_for("ready", PROMPT * 4);
    run.resize(40, 132);
    let screen = run.wait_for("40 132", PROMPT * 4);
    assert!(screen.contains("33 101"), "{screen:?}");
    assert_eq!(run.child.wait().unwrap().code(), Some(0));

    // `ls` shows it running; `down` stops it and exec then says what to do.
    let out = e2e().run(&["ls", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vm = list.as_array().unwrap().iter().find(|v| v["name"] == "e2e-main").expect("listed");
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["workspace"], ws.path().to_str().unwrap());
    assert_eq!(code(&e2e().run(&["down", "e2e-main"])), 0);
    let out = exec(&["true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("is stopped") && stderr(&out).contains("hutch up --name e2e-main"), "{}", stderr(&out));

    // `up` again brings the same VM back; `rm` removes every trace.
    up("e2e-main", ws.path());
    assert_eq!(code(&exec(&["true"])), 0);
    rm("e2e-main");
    assert!(!e2e().state.path().join("vms/e2e-main").exists());
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn run_rm_propagates_the_code_and_leaves_nothing_behind() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let mut args = vec!["run", "--rm", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(&["--", "sh", "-c", "uname -n; exit 3"]);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hutch-guest\n");
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/run-")), "left behind: {:?}", e2e().vm_processes());
    let vms = std::fs::read_dir(e2e().state.path().join("vms"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("run-")).count())
        .unwrap_or(0);
    assert_eq!(vms, 0, "a run-* VM folder was left behind");
}

/// `LISTING` of `dir` plus the folder's own mtime: creating and removing an
/// entry changes it, so equal listings mean the folder was left as it was.
fn listing_with_mtime(dir: &std::path::Path) -> String {
    let mtime = std::fs::metadata(dir).unwrap().modified().unwrap();
    format!("{mtime:?}\n{}", host_listing(dir))
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn run_rm_leaves_a_folder_without_markers_exactly_as_it_was() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("notes.txt"), "plain folder\n").unwrap();
    std::fs::create_dir(ws.path().join("sub")).unwrap();
    let before = listing_with_mtime(ws.path());
    let mut args = vec!["run", "--rm", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(&["--", "sh", "-c", "ls -A"]);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // All the guest sees added is the git guard's empty, read-only `.git`,
    // which keeps the guest from making a repository the host's git would
    // use (docs/git.md); it is gone with the VM.
    assert_eq!(stdout(&out), ".git\nnotes.txt\nsub\n", "the guest saw something hutch added");
    assert_eq!(listing_with_mtime(ws.path()), before, "run --rm changed a folder without markers");
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn a_node_project_shows_node_modules_only_while_its_vm_runs() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("package.json"), "{}\n").unwrap();
    let before = listing_with_mtime(ws.path());
    let entries = || {
        let mut names: Vec<String> = std::fs::read_dir(ws.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    up("e2e-node", ws.path());
    // And the git guard's placeholder `.git` (the folder has no repository).
    assert_eq!(entries(), [".git", "node_modules", "package.json"], "only the dir package.json implies");
    assert_eq!(std::fs::read_dir(ws.path().join("node_modules")).unwrap().count(), 0);
    assert_eq!(code(&e2e().run(&["down", "e2e-node"])), 0);
    assert_eq!(entries(), ["package.json"], "down left the empty mount point");
    up("e2e-node", ws.path());
    rm("e2e-node");
    assert_eq!(listing_with_mtime(ws.path()).lines().skip(1).collect::<Vec<_>>(), before.lines().skip(1).collect::<Vec<_>>());
    assert_eq!(entries(), ["package.json"], "rm left the empty mount point");

    // The same at the end of `run --rm`.
    let mut args = vec!["run", "--rm", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(&["--", "sh", "-c", "test -d node_modules && echo present"]);
    let out = e2e().run(&args);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "present\n"), "{}", stderr(&out));
    assert_eq!(entries(), ["package.json"], "run --rm left the empty mount point");
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn two_runs_at_once_get_two_vms() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let spawn = |tag: &str| {
        let mut args = vec!["run", "--rm", "--workspace", ws.path().to_str().unwrap()];
        args.extend_from_slice(SMALL);
        let script = format!("echo {tag}; cat /proc/sys/kernel/random/boot_id");
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        e2e().hutch().args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn("first"), spawn("second"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    let (a, b) = (stdout(&a), stdout(&b));
    assert!(a.starts_with("first\n") && b.starts_with("second\n"));
    assert_ne!(a.lines().nth(1), b.lines().nth(1), "both commands ran in the same guest");
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/run-")));
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn sigterm_to_hutch_run_still_deletes_the_vm() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader};
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let mut args = vec!["run", "--rm", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(&["--", "sh", "-c", "echo booted; exec sleep 1000"]);
    let mut child = e2e().hutch().args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "booted\n");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/run-")), "left behind: {:?}", e2e().vm_processes());
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn the_runtime_hook_runs_before_the_command_and_its_failure_stops_run() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::create_dir_all(ws.path().join(".hutch")).unwrap();
    let hook = ws.path().join(".hutch/runtime.sh");
    std::fs::write(&hook, "echo hook-output\necho ran > hook-ran\n").unwrap();
    let run = |command: &[&str]| {
        let mut args = vec!["run", "--rm", "--workspace", ws.path().to_str().unwrap()];
        args.extend_from_slice(SMALL);
        args.push("--");
        args.extend_from_slice(command);
        e2e().run(&args)
    };
    let out = run(&["cat", "hook-ran"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n", "the hook's output goes to stderr, the command's to stdout");
    assert!(stderr(&out).contains("hook-output"), "{}", stderr(&out));

    std::fs::write(&hook, "echo setting up; exit 9\n").unwrap();
    let out = run(&["touch", "command-ran"]);
    assert_eq!(code(&out), 9, "{}", stderr(&out));
    assert!(stderr(&out).contains("failed"), "{}", stderr(&out));
    assert!(!ws.path().join("command-ran").exists(), "the command ran despite the failed hook");
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/run-")), "left behind: {:?}", e2e().vm_processes());
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn a_server_in_the_guest_is_reachable_through_up_forward_until_down() {
    use std::io::{Read, Write};
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("index.html"), "served from the guest\n").unwrap();
    let port = hutch_tests::free_tcp_port();
    let mapping = format!("{port}:3000");
    let mut args = vec!["up", "--name", "e2e-fwd", "--workspace", ws.path().to_str().unwrap(), "--forward", &mapping];
    args.extend_from_slice(SMALL);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // busybox httpd daemonizes, so the exec returns while it serves.
    let serve = format!("httpd -p 127.0.0.1:3000 -h '{}'", ws.path().display());
    let out = e2e().run(&["exec", "--name", "e2e-fwd", "--", "sh", "-c", &serve]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the forwarded port accepts");
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.") && reply.ends_with("served from the guest\n"), "{reply:?}");

    assert_eq!(code(&e2e().run(&["down", "e2e-fwd"])), 0);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the forwarder outlived `hutch down`");
    rm("e2e-fwd");
}

/// A listing of `dir` computed by the same POSIX script on the host and in the
/// guest: type, permissions, content hash or link target, one path per line.
const LISTING: &str = r#"cd "$1" && find . -path ./.git -prune -o -print | LC_ALL=C sort | while read -r p; do
  if [ -L "$p" ]; then echo "L $p -> $(readlink "$p")";
  elif [ -d "$p" ]; then echo "D $p $(stat -c %a "$p")";
  else echo "F $p $(stat -c %a "$p") $(md5sum < "$p" | cut -d' ' -f1)"; fi; done"#;

fn host_listing(dir: &std::path::Path) -> String {
    let out = std::process::Command::new("sh").args(["-c", LISTING, "sh", dir.to_str().unwrap()]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn guest_listing(name: &str, dir: &std::path::Path) -> String {
    let out = e2e().run(&["exec", "--name", name, "--", "sh", "-c", LISTING, "sh", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn ro_snapshots_never_write_to_the_host_and_resync_to_equal_trees() {
    use std::os::unix::fs::PermissionsExt;
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let w = |rel: &str, data: &str| {
        let path = ws.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    w("src/main.rs", "fn main() {}\n");
    w("README.md", "hello\n");
    w("old-name.txt", "to be renamed\n");
    w("gone.txt", "to be deleted\n");
    w(".gitignore", "build/\n");
    w("build/artifact", "ignored\n");
    std::os::unix::fs::symlink("src/main.rs", ws.path().join("link")).unwrap();
    let mut args = vec!["up", "--name", "e2e-ro", "--ro", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(SMALL);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected = |listing: String| listing.lines().filter(|l| !l.contains("./build")).collect::<Vec<_>>().join("\n");
    assert_eq!(expected(guest_listing("e2e-ro", ws.path())), expected(host_listing(ws.path())));

    // Guest writes stay in the guest.
    let script = "echo guest > src/main.rs && echo new > guest-only.txt && rm README.md";
    assert_eq!(code(&e2e().run(&["exec", "--name", "e2e-ro", "--", "sh", "-c", script])), 0);
    assert_eq!(std::fs::read_to_string(ws.path().join("src/main.rs")).unwrap(), "fn main() {}\n");
    assert!(!ws.path().join("guest-only.txt").exists());
    assert!(ws.path().join("README.md").exists());

    // `hutch diff` shows them, as a patch `git apply` takes on a copy of the host tree.
    let out = e2e().run(&["diff", "--name", "e2e-ro"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let copy = tempfile::tempdir_in("/tmp").unwrap();
    assert!(
        std::process::Command::new("cp")
            .args(["-a", &format!("{}/.", ws.path().display()), copy.path().to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let patch = copy.path().join("guest.patch");
    std::fs::write(&patch, &out.stdout).unwrap();
    let applied = std::process::Command::new("git")
        .args(["apply", "--unsafe-paths", patch.to_str().unwrap()])
        .current_dir(copy.path())
        .output()
        .unwrap();
    assert!(applied.status.success(), "git apply: {}\n{}", String::from_utf8_lossy(&applied.stderr), stdout(&out));
    assert_eq!(std::fs::read_to_string(copy.path().join("src/main.rs")).unwrap(), "guest\n");
    assert_eq!(std::fs::read_to_string(copy.path().join("guest-only.txt")).unwrap(), "new\n");
    assert!(!copy.path().join("README.md").exists());

    // Host changes of every kind; the next exec re-syncs first, and guest
    // changes to host files are reset.
    w("added.txt", "added\n");
    w("src/main.rs", "fn main() { println!(\"v2\"); }\n");
    std::fs::remove_file(ws.path().join("gone.txt")).unwrap();
    std::fs::rename(ws.path().join("old-name.txt"), ws.path().join("new-name.txt")).unwrap();
    std::fs::set_permissions(ws.path().join("README.md"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(ws.path().join("link")).unwrap();
    std::os::unix::fs::symlink("README.md", ws.path().join("link")).unwrap();
    let guest = guest_listing("e2e-ro", ws.path());
    let guest: Vec<&str> = guest.lines().filter(|l| !l.contains("./build") && !l.contains("guest-only.txt")).collect();
    assert_eq!(guest.join("\n"), expected(host_listing(ws.path())));
    rm("e2e-ro");
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn ro_git_brings_the_repository_so_git_works_in_the_guest() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(ws.path()).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(ws.path().join("tracked.txt"), "v1\n").unwrap();
    git(&["init", "-q"]);
    git(&["-c", "user.email=t@t", "-c", "user.name=t", "add", "."]);
    git(&["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]);
    let mut args = vec!["up", "--name", "e2e-git", "--ro-git", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(SMALL);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = e2e().run(&[
        "exec",
        "--name",
        "e2e-git",
        "--",
        "sh",
        "-c",
        "echo v2 > tracked.txt && git status --short && git log --oneline | wc -l",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).split_whitespace().collect::<Vec<_>>(), ["M", "tracked.txt", "1"]);

    // What the guest plants in its copy of .git never reaches the host: not
    // through the snapshot, and not through `hutch diff`.
    let canary = tempfile::tempdir_in("/tmp").unwrap();
    let plant = format!(
        "printf '#!/bin/sh\\ntouch {c}/hook\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout && \
         git config core.fsmonitor 'touch {c}/fsmonitor' && git config core.pager 'touch {c}/pager' && echo ok",
        c = canary.path().display()
    );
    let out = e2e().run(&["exec", "--name", "e2e-git", "--", "sh", "-c", &plant]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "ok\n"), "{}", stderr(&out));
    let out = e2e().run(&["diff", "--name", "e2e-git"]);
    assert!(!stdout(&out).contains(".git/"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(".git/hooks/post-checkout: the guest changed a file inside .git; hutch never patches .git"),
        "{}",
        stderr(&out)
    );
    for args in [&["status"][..], &["diff"], &["log", "-p"], &["checkout", "-q", "-b", "other"], &["commit", "-qam", "host"]] {
        std::process::Command::new("git").args(args).current_dir(ws.path()).output().unwrap();
    }
    assert_eq!(std::fs::read_dir(canary.path()).unwrap().count(), 0, "git on the host ran what the guest planted");
    rm("e2e-git");
}

/// The Debian base image from `cargo xtask base-image` (no agent, systemd,
/// sshd, root password), and its root password.
fn debian_base() -> (String, String) {
    let base = std::env::var("HUTCH_E2E_BASE").expect("HUTCH_E2E_BASE: run `cargo xtask e2e` (it builds the Debian base image)");
    let password = std::env::var("HUTCH_E2E_BASE_PASSWORD").expect("HUTCH_E2E_BASE_PASSWORD");
    (base, password)
}

/// A disk image boots with the default image's kernel and initramfs: install
/// the fixture's image as the state folder's default, as `cargo xtask image` does.
fn install_default_image() {
    let default = e2e().state.path().join("images/default");
    if default.join("image.json").exists() {
        return;
    }
    std::fs::create_dir_all(&default).unwrap();
    for file in ["image.json", "vmlinux", "initramfs.cpio"] {
        std::fs::copy(e2e().image.join(file), default.join(file)).unwrap();
    }
}

/// `hutch image prepare BASE --backend qemu …` with `config_home` as XDG_CONFIG_HOME.
fn prepare(base: &str, name: &str, password: &str, config_home: &std::path::Path) -> std::process::Output {
    let args = ["image", "prepare", base, "--backend", "qemu", "--name", name, "--user", "root", "--password"];
    e2e().hutch().args(args).env("XDG_CONFIG_HOME", config_home).env("HUTCH_SSH_PASSWORD", password).stdin(Stdio::null()).output().unwrap()
}

fn left_behind(name: &str) -> Vec<(u32, String)> {
    let needle = format!("/vms/{name}/");
    e2e().vm_processes().into_iter().filter(|(_, c)| c.contains(&needle)).collect()
}

#[test]
#[ignore = "needs QEMU, a guest image and the Debian base image: run `cargo xtask e2e`"]
fn image_prepare_installs_the_agent_as_a_systemd_service_and_runs_the_setup_hook_once() {
    let (base, password) = debian_base();
    install_default_image();
    let config = tempfile::tempdir_in("/tmp").unwrap();
    let hook = config.path().join("setup.sh");
    std::fs::write(&hook, "echo setup-hook-output\necho ran-once >> /hutch-setup-marker\n").unwrap();
    std::fs::create_dir_all(config.path().join("hutch")).unwrap();
    std::fs::write(config.path().join("hutch/config.toml"), format!("[hooks]\nsetup = \"{}\"\n", hook.display())).unwrap();

    let out = prepare(&base, "e2e-debian", &password, config.path());
    assert_eq!(code(&out), 0, "hutch image prepare failed:\n{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("first connection to hutch-vm:e2e-debian"), "the host key is pinned by VM name:\n{}", stderr(&out));
    assert!(stderr(&out).contains("setup-hook-output"), "{}", stderr(&out));
    assert!(stdout(&out).contains("is ready in"), "{}", stdout(&out));
    let image = e2e().state.path().join("images/e2e-debian");
    assert!(image.join("image.json").exists() && image.join("disk.qcow2").exists());
    assert!(!e2e().state.path().join("vms/e2e-debian").exists(), "the VM that prepared the image was left behind");
    assert!(left_behind("e2e-debian").is_empty(), "left running: {:?}", left_behind("e2e-debian"));

    // A fresh VM from the prepared image: systemd is PID 1 and started the
    // agent, the hook ran exactly once (at prepare time), and the workspace is
    // shared at its host path.
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("from-host"), "shared\n").unwrap();
    let mut args =
        vec!["run", "--rm", "--image", "e2e-debian", "--workspace", ws.path().to_str().unwrap(), "--cpus", "1", "--memory", "512"];
    let script = "cat /hutch-setup-marker; cat /proc/1/comm; systemctl is-active hutch-agent; cat from-host; cat /etc/hostname";
    args.extend_from_slice(&["--", "sh", "-c", script]);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran-once\nsystemd\nactive\nshared\nhutch-debian\n", "{}", stderr(&out));
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/run-")), "left behind: {:?}", e2e().vm_processes());
}

#[test]
#[ignore = "needs QEMU, a guest image and the Debian base image: run `cargo xtask e2e`"]
fn image_prepare_with_a_wrong_password_says_so_and_leaves_nothing_behind() {
    let (base, _) = debian_base();
    install_default_image();
    let config = tempfile::tempdir_in("/tmp").unwrap();
    let out = prepare(&base, "e2e-wrong-pw", "not-the-password", config.path());
    let err = stderr(&out);
    assert_eq!(code(&out), 125, "{}\n{err}", stdout(&out));
    assert!(err.contains("root@127.0.0.1:") && err.contains("refused the SSH login (password)"), "{err}");
    assert!(err.contains("hint: check --user and the password"), "{err}");
    assert!(!e2e().state.path().join("vms/e2e-wrong-pw").exists(), "the VM's folder was left behind");
    assert!(!e2e().state.path().join("images/e2e-wrong-pw").exists(), "an image was saved");
    assert!(left_behind("e2e-wrong-pw").is_empty(), "left running: {:?}", left_behind("e2e-wrong-pw"));
    assert!(std::path::Path::new(&base).is_file(), "the base image is gone");
}

/// The plain Debian base from `cargo xtask e2e` (`minbase`: no systemd, no
/// sshd, no users, no apt lists).
fn plain_base() -> String {
    std::env::var("HUTCH_E2E_PLAIN_BASE").expect("HUTCH_E2E_PLAIN_BASE: run `cargo xtask e2e` (it builds the plain Debian base)")
}

#[test]
#[ignore = "needs QEMU, a guest image and the plain Debian base image: run `cargo xtask e2e`"]
fn image_prepare_init_hutch_boots_a_disk_without_systemd_or_sshd_and_its_hook_uses_apt() {
    let base = plain_base();
    install_default_image();
    let config = tempfile::tempdir_in("/tmp").unwrap();
    let hook = config.path().join("setup.sh");
    // The base has no apt lists: the hook fetches them from Debian's mirror,
    // which the preparing VM reaches although no allow rule names it.
    let script = "apt-get update -qq && apt-get install -y -qq --no-install-recommends hello >/dev/null\necho \"hook ran as $(id -un)\" > /hutch-setup-marker\n";
    std::fs::write(&hook, script).unwrap();
    std::fs::create_dir_all(config.path().join("hutch")).unwrap();
    std::fs::write(config.path().join("hutch/config.toml"), format!("[hooks]\nsetup = \"{}\"\n", hook.display())).unwrap();

    let prepare = |extra: &[&str]| {
        let mut args = vec!["image", "prepare", &base, "--name", "e2e-plain"];
        args.extend_from_slice(extra);
        e2e().hutch().args(args).env("XDG_CONFIG_HOME", config.path()).stdin(Stdio::null()).output().unwrap()
    };
    // SSH flags belong to the other path.
    let out = prepare(&["--init", "hutch", "--password"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("'--init <INIT>' cannot be used with '--password'"), "{}", stderr(&out));
    let out = prepare(&["--init", "hutch"]);
    assert_eq!(code(&out), 0, "hutch image prepare --init hutch failed:\n{}\n{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("hutch: created the user hutch"), "{err}");
    assert!(err.contains("sudo is not installed"), "{err}");
    assert!(stdout(&out).contains("is ready in"), "{}", stdout(&out));
    let image = e2e().state.path().join("images/e2e-plain");
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(image.join("image.json")).unwrap()).unwrap();
    assert_eq!((spec["init"].as_str(), spec["disk"]["format"].as_str()), (Some("hutch"), Some("qcow2")), "{spec}");
    assert!(!e2e().state.path().join("vms/e2e-plain").exists(), "the VM that prepared the image was left behind");
    assert!(left_behind("e2e-plain").is_empty(), "left running: {:?}", left_behind("e2e-plain"));

    // A VM from it: hutch's init is PID 1, commands run as the image's user
    // with the host user's ids (root's here when the host user is root), the
    // hook ran once at prepare time, and what it installed with apt is there.
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("from-host"), "shared\n").unwrap();
    let script = "cat /hutch-setup-marker; cat /proc/1/comm; id -u; hello; cat from-host; \
                  ls /lib/systemd/systemd /usr/sbin/sshd 2>/dev/null | wc -l; grep -c '^hutch:' /etc/passwd";
    let args = [
        "run",
        "--rm",
        "--image",
        "e2e-plain",
        "--workspace",
        ws.path().to_str().unwrap(),
        "--cpus",
        "1",
        "--memory",
        "512",
        "--",
        "sh",
        "-c",
        script,
    ];
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(stdout(&out), format!("hook ran as root\nhutch-agent\n{uid}\nHello, world!\nshared\n0\n1\n"), "{}", stderr(&out));
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/run-")), "left behind: {:?}", e2e().vm_processes());
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn the_guest_reaches_only_what_the_hosts_policy_allows() {
    const SECRET: &str = "sk-e2e-real-value-0123456789";
    let server = hutch_tests::web::WebServer::http("127.0.0.2");
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let config = format!(
        "[network]\nallow = [\"{}\", \"10.0.0.0/8:*\"]\n\n[secrets.TEST_KEY]\nfrom_env = \"HOST_TEST_KEY\"\nhosts = [\"api.example.invalid\"]\n",
        server.addr
    );
    std::fs::write(ws.path().join("hutch.toml"), config).unwrap();
    let hutch = |args: &[&str]| {
        let mut cmd = e2e().hutch();
        cmd.current_dir(ws.path()).env("HOST_TEST_KEY", SECRET).env_remove("HUTCH_NETWORK").args(args).stdin(Stdio::null());
        cmd.output().unwrap()
    };
    let mut args = vec!["up", "--name", "e2e-net", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(SMALL);
    let out = hutch(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let guest = |script: &str| hutch(&["exec", "--name", "e2e-net", "--", "sh", "-c", script]);

    // busybox wget follows http_proxy: an allowed host answers, through the host.
    let url = format!("http://{}/hello", server.addr);
    let out = guest(&format!("wget -q -O - {url}"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("GET /hello\n"), "{}", stdout(&out));
    // ... over the link: the guest's own TCP stack to the network process's
    // end of a virtio-net device, which answers the proxy's port only.
    let out = guest(
        "echo \"$http_proxy\"; grep -c 'http_proxy=http://192.168.127.1:3128' /etc/environment; ip -4 addr | grep -o '192.168.127.2/24'; \
         cat /sys/class/net/eth0/mtu",
    );
    assert_eq!(stdout(&out), "http://192.168.127.1:3128\n1\n192.168.127.2/24\n65520\n", "{}", stderr(&out));
    let out = guest("wget -q -T 5 -Y off -O - http://192.168.127.1:22/");
    assert_ne!(code(&out), 0, "the link's host end answered another port: {}", stdout(&out));
    // The loopback pipe still carries programs told of it before.
    let out = guest(&format!("http_proxy=http://127.0.0.1:3128 wget -q -O - {url}"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("GET /hello\n"), "{}", stdout(&out));

    // The guest holds a placeholder, never the value.
    let out = guest("echo \"$TEST_KEY\"; env; cat /etc/environment");
    assert!(stdout(&out).starts_with("hutch-placeholder-TEST_KEY-"), "{}", stdout(&out));
    assert!(!stdout(&out).contains(SECRET), "the real value reached the guest");
    // ... and the placeholder sent to another host is refused.
    let out = guest(&format!("wget -q -O - --header \"X-Key: $TEST_KEY\" http://{}/leak", server.addr));
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    // A host not on the list: refused, naming the host and the line to add.
    let out = guest("wget -q -O - http://example.com/");
    assert!(
        stderr(&out).contains("example.com:80: not on the allow list") && stderr(&out).contains("allow = [\"example.com\"]"),
        "{}",
        stderr(&out)
    );
    // A private address, even allowed by a range: refused.
    let out = guest("wget -q -O - http://10.1.2.3:8080/");
    assert!(stderr(&out).contains("a private address"), "{}", stderr(&out));
    // Around the proxy, an IP address: no route at all.
    let out = guest("wget -q -T 5 -Y off -O - http://1.1.1.1/");
    assert_ne!(code(&out), 0, "a direct connection left the guest: {}", stdout(&out));

    // One audit line per decision and per exec, and no secret value.
    let log = hutch_tests::audit_log(e2e().state.path());
    assert!(!log.contains(SECRET));
    let events: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|e| e["vm"] == "e2e-net").collect();
    let egress: Vec<_> = events.iter().filter(|e| e["event"] == "egress").collect();
    let decisions: Vec<(&str, &str)> = egress.iter().map(|e| (e["host"].as_str().unwrap(), e["decision"].as_str().unwrap())).collect();
    assert_eq!(
        decisions,
        [("127.0.0.2", "allow"), ("127.0.0.2", "allow"), ("127.0.0.2", "deny"), ("example.com", "deny"), ("10.1.2.3", "deny")],
        "{log}"
    );
    assert_eq!(events.iter().filter(|e| e["event"] == "exec").count(), 9, "{log}");

    // A network process killed while the VM runs is started again by the
    // next exec, and connects to QEMU's end of the link again.
    let pid_file = e2e().state.path().join("vms/e2e-net/net/net.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let net_log = e2e().state.path().join("vms/e2e-net/net/net.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hutch_tests::daemon_running(&net_log) {
        assert!(std::time::Instant::now() < deadline, "the killed network process still holds its log");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = guest(&format!("wget -q -O - {url}"));
    assert!(stderr(&out).contains("was gone; starting it again"), "{}", stderr(&out));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("GET /hello\n"), "{}", stdout(&out));
    let log = std::fs::read_to_string(&net_log).unwrap();
    assert_eq!(log.matches("link: eth0 192.168.127.2/24").count(), 2, "{log}");

    // `down` stops the network process with the VM.
    let out = hutch(&["down", "e2e-net"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!hutch_tests::daemon_running(&net_log), "the network process outlived the VM");
    rm("e2e-net");
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn a_session_in_the_guest_outlives_its_client_and_ends_with_its_agent() {
    use std::io::{BufRead, BufReader, Read};
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    up("e2e-sessions", ws.path());
    let hutch = |args: &[&str]| {
        let mut all = vec![args[0], "--name", "e2e-sessions"];
        all.extend_from_slice(&args[1..]);
        e2e().run(&all)
    };
    // Guest fifos: the session says when its output is out, and waits to be let go.
    assert_eq!(code(&hutch(&["exec", "--", "mkfifo", "/tmp/written", "/tmp/go"])), 0);
    let script = "seq 1 100000; : > /tmp/written; read x < /tmp/go; echo after; exit 3";
    let out = hutch(&["exec", "--detach", "--buffer", "64K", "--tag", "job", "--", "sh", "-c", script]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "job\n"), "{}", stderr(&out));
    assert_eq!(code(&hutch(&["exec", "--", "cat", "/tmp/written"])), 0);

    let mut attach = e2e()
        .hutch()
        .args(["attach", "--name", "e2e-sessions", "job"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut notice = String::new();
    BufReader::new(attach.stderr.take().unwrap()).read_line(&mut notice).unwrap();
    let dropped: usize = notice.trim_start_matches("hutch: [").split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{notice}"));
    let all: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    let mut out = attach.stdout.take().unwrap();
    let mut tail = vec![0; all.len() - dropped];
    out.read_exact(&mut tail).unwrap();
    assert!(tail == all.as_bytes()[dropped..], "the buffer's tail, in order");
    assert!(tail.len() <= 64 << 10 && tail.ends_with(b"\n99999\n100000\n"));
    assert_eq!(code(&hutch(&["exec", "--", "sh", "-c", "echo > /tmp/go"])), 0);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "after\n");
    assert_eq!(attach.wait().unwrap().code(), Some(3));
    assert_eq!(code(&hutch(&["wait", "job"])), 3);

    // The agent crashes (its init starts another): the session it ran ends,
    // and the next agent says so.
    assert_eq!(code(&hutch(&["exec", "-d", "--tag", "sleeper", "--", "sleep", "1000"])), 0);
    let list: serde_json::Value = serde_json::from_str(&stdout(&hutch(&["ps", "--json"]))).unwrap();
    let pid = list.as_array().unwrap().iter().find(|s| s["tag"] == "sleeper").expect("listed")["pid"].to_string();
    let _ = hutch(&["exec", "--", "sh", "-c", "kill -KILL $PPID"]);
    let deadline = std::time::Instant::now() + PROMPT * 6;
    let list = loop {
        let out = hutch(&["ps", "--json"]);
        if code(&out) == 0 {
            break serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "the agent did not come back: {}", stderr(&out));
    };
    let sleeper = list.as_array().unwrap().iter().find(|s| s["tag"] == "sleeper").expect("listed");
    assert_eq!((sleeper["state"].as_str(), sleeper["lost_reason"].as_str()), (Some("lost"), Some("the agent restarted")));
    // Gone, or a zombie that init has not reaped yet.
    let state =
        format!("s=$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -c1); [ -n \"$s\" ] && [ \"$s\" != Z ] && echo alive || echo gone");
    let out = hutch(&["exec", "--", "sh", "-c", &state]);
    assert_eq!(stdout(&out), "gone\n", "the crashed agent's session was ended");

    an_mcp_client_works_in_the_guest("e2e-sessions", ws.path());
    rm("e2e-sessions");
}

/// `hutch mcp` on a booted guest, through the `mcp` Python package's client
/// (on the boot of the sessions test: no VM of its own): a command's code
/// and output, a file round trip through the shared workspace, a detached
/// session read with `session_logs` and ended with `session_wait`, and a
/// cancelled command gone from the guest's process list.
fn an_mcp_client_works_in_the_guest(name: &str, ws: &std::path::Path) {
    use base64::Engine;
    use serde_json::json;
    let mut hutch = e2e().hutch();
    hutch.args(["mcp", "--name", name]);
    let mut mcp = hutch_tests::mcp::McpClient::start(&hutch);

    let result = mcp.call("exec", json!({"command": "uname -n; echo err >&2; exit 7"})).ok().clone();
    assert_eq!(
        (result["exit_code"].as_u64(), result["stdout"].as_str(), result["stderr"].as_str()),
        (Some(7), Some("hutch-guest\n"), Some("err\n"))
    );

    let path = ws.join("from-mcp.txt");
    mcp.call("write_file", json!({"path": path, "content": "written through MCP\n"})).ok();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "written through MCP\n", "the guest's write is in the shared project");
    let data = pseudo_random(100_000, 7);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
    mcp.call("write_file", json!({"path": ws.join("data.bin"), "content_base64": encoded})).ok();
    let mut back = Vec::new();
    while back.len() < data.len() {
        let result = mcp.call("read_file", json!({"path": ws.join("data.bin"), "offset": back.len(), "length": 65536})).ok().clone();
        back.extend(base64::engine::general_purpose::STANDARD.decode(result["content_base64"].as_str().unwrap()).unwrap());
    }
    assert!(back == data, "100 kB round trip");
    let result = mcp.call("read_file", json!({"path": path})).ok().clone();
    assert_eq!(result["content"], "written through MCP\n");

    let started =
        mcp.call("session_start", json!({"command": "for i in 1 2 3; do echo line $i; done; exit 4", "tag": "mcp-job"})).ok().clone();
    assert_eq!(started["tag"], "mcp-job");
    let early = mcp.call("session_logs", json!({"tag": "mcp-job", "since_offset": 0})).ok().clone();
    let ended = mcp.call("session_wait", json!({"tag": "mcp-job"})).ok().clone();
    assert_eq!((ended["state"].as_str(), ended["exit_code"].as_u64()), (Some("exited"), Some(4)));
    let logs = mcp.call("session_logs", json!({"tag": "mcp-job", "since_offset": early["end_offset"]})).ok().clone();
    let all = format!("{}{}", early["output"].as_str().unwrap(), logs["output"].as_str().unwrap());
    assert_eq!(all, "line 1\nline 2\nline 3\n");

    assert_eq!(mcp.cancel("exec", json!({"argv": ["sleep", "3527"]})).raw["cancelled"], true);
    let deadline = std::time::Instant::now() + PROMPT * 4;
    loop {
        let scan = "for p in /proc/[0-9]*; do { tr '\\0' ' ' < $p/cmdline; } 2>/dev/null; echo; done | grep -c '^sleep 3527 '; true";
        let result = mcp.call("exec", json!({"command": scan})).ok().clone();
        if result["stdout"] == "0\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the cancelled command is still in the guest: {result}");
    }
    assert!(mcp.close().success());
}
