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

/// `hutch exec` of `argv` as it is (no shell quoting in between).
fn exec_argv(name: &str, argv: &[&str]) -> Output {
    let mut all = vec!["exec", "--name", name, "--"];
    all.extend_from_slice(argv);
    e2e().run(&all)
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

/// git on the host, in `dir`; its output (failures included: what matters is
/// what it ran).
fn host_git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git").args(args).current_dir(dir).env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null()).output().unwrap()
}

fn host_git_ok(dir: &Path, args: &[&str]) -> String {
    let out = host_git(dir, args);
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim_end().to_owned()
}

/// A project as a user's clone is: a repository with an `origin` (a bare
/// repository beside it), a populated submodule (`libs/lib`) and one never
/// initialised (`vendor/empty`), the user's identity in its config.
struct Project {
    root: tempfile::TempDir,
    ws: PathBuf,
    /// Where every hook and program the guest plants would leave a file, on
    /// the host (the guest has no such folder).
    canary: PathBuf,
}

impl Project {
    fn new() -> Project {
        let root = tempfile::tempdir_in("/tmp").unwrap();
        let (ws, lib, origin, canary) =
            (root.path().join("ws"), root.path().join("lib"), root.path().join("origin.git"), root.path().join("canary"));
        for dir in [&ws, &lib, &canary] {
            std::fs::create_dir(dir).unwrap();
        }
        let git = |dir: &Path, args: &[&str]| {
            let mut all = vec![
                "-c",
                "user.name=Host User",
                "-c",
                "user.email=user@host",
                "-c",
                "init.defaultBranch=main",
                "-c",
                "protocol.file.allow=always",
            ];
            all.extend_from_slice(args);
            host_git_ok(dir, &all)
        };
        git(&lib, &["init", "-q"]);
        git(&lib, &["commit", "-q", "--allow-empty", "-m", "lib"]);
        git(&ws, &["init", "-q"]);
        git(&ws, &["config", "user.name", "Host User"]);
        git(&ws, &["config", "user.email", "user@host"]);
        std::fs::write(ws.join("package.json"), "{\"name\":\"e2e\",\"version\":\"1.0.0\"}\n").unwrap();
        // What the Node 22 check (`node22-check`, from the image's setup hook) sums.
        std::fs::create_dir(ws.join("data")).unwrap();
        std::fs::write(ws.join("data/a.json"), "{\"n\": 40}\n").unwrap();
        std::fs::write(ws.join("data/b.json"), "{\"n\": 2}\n").unwrap();
        std::fs::write(ws.join("a.txt"), "one\n").unwrap();
        git(&ws, &["add", "."]);
        git(&ws, &["commit", "-qm", "one"]);
        git(&ws, &["submodule", "add", "-q", lib.to_str().unwrap(), "libs/lib"]);
        git(&ws, &["submodule", "add", "-q", lib.to_str().unwrap(), "vendor/empty"]);
        git(&ws, &["commit", "-qm", "submodules"]);
        git(&ws, &["submodule", "deinit", "-q", "-f", "vendor/empty"]);
        git(root.path(), &["clone", "-q", "--bare", ws.to_str().unwrap(), origin.to_str().unwrap()]);
        git(&ws, &["remote", "add", "origin", origin.to_str().unwrap()]);
        git(&ws, &["fetch", "-q", "origin"]);
        Project { root, ws, canary }
    }

    /// What the host's repository holds in `.git` that a guest could have planted.
    fn planted_in_host_git(&self) -> Vec<String> {
        let git_dir = self.ws.join(".git");
        let mut found = Vec::new();
        for name in ["commondir", "config.worktree", "rebase-merge", "sequencer", "remotes", "branches", "worktrees", "info/attributes"] {
            // A folder counts when something is in it: `git init` makes an
            // empty `branches/` from its templates (git before 2.48).
            let path = git_dir.join(name);
            let planted = if path.is_dir() { !entries(&path).is_empty() } else { path.exists() };
            if planted {
                found.push(name.to_owned());
            }
        }
        for hook in entries(&git_dir.join("hooks")) {
            if !hook.ends_with(".sample") {
                found.push(format!("hooks/{hook}"));
            }
        }
        for config in [git_dir.join("config"), git_dir.join("modules/libs/lib/config")] {
            if std::fs::read_to_string(&config).unwrap().contains("planted") {
                found.push(config.display().to_string());
            }
        }
        found
    }
}

/// Every way the issue and its review found for a guest to make git on the
/// host run its code, planted as the guest's user: into the guest's own
/// gitdir (hooks, config, `info/attributes`, `commondir`, a rebase todo…),
/// into the worktree (`.gitattributes`, scripts, a nested repository, a
/// `gitdir:` file), and straight at what the host guards (a submodule's
/// `.git`, an unpopulated submodule, the folders leading to one). Prints
/// `WRITTEN …` for any write the host should have refused.
const PLANT: &str = r#"C="$1"; w=$PWD
mk() { printf '#!/bin/sh\ntouch %s/%s 2>/dev/null\nexit 0\n' "$C" "$1" > "$2"; chmod +x "$2"; }
# A commit adding a submodule at a path the host does not have.
git update-index --add --cacheinfo "160000,$(git rev-parse HEAD),sub-evil" && git commit -qm 'adds a submodule'
hooks="pre-commit prepare-commit-msg commit-msg post-commit post-checkout post-merge pre-push pre-rebase post-rewrite reference-transaction pre-auto-gc post-index-change push-to-checkout fsmonitor-watchman"
mkdir -p .git/hooks && for h in $hooks; do mk "hook-$h" ".git/hooks/$h"; done
mkdir -p planted planted-hooks
for p in fsmonitor pager editor diff filter textconv ssh cred askpass alias; do mk "$p" "planted/$p"; done
for h in $hooks; do mk "hookspath-$h" "planted-hooks/$h"; done
git config core.hooksPath "$w/planted-hooks"
git config core.fsmonitor "$w/planted/fsmonitor"
git config core.pager "$w/planted/pager"
git config core.editor "$w/planted/editor"
git config core.sshCommand "$w/planted/ssh"
git config core.askPass "$w/planted/askpass"
git config diff.external "$w/planted/diff"
git config diff.evil.textconv "$w/planted/textconv"
git config filter.evil.clean "$w/planted/filter"
git config filter.evil.smudge "$w/planted/filter"
git config credential.helper "!$w/planted/cred"
git config alias.lg "!$w/planted/alias"
printf '[core]\n\tfsmonitor = %s/planted/fsmonitor\n' "$w" > planted/included.cfg
git config include.path "$w/planted/included.cfg"
printf '* filter=evil diff=evil\n' > .git/info/attributes
printf '*.txt filter=evil diff=evil\n' > .gitattributes
mkdir -p planted/common && cp planted/included.cfg planted/common/config
cp planted/included.cfg .git/config.worktree
mkdir -p .git/rebase-merge .git/sequencer .git/remotes .git/branches .git/worktrees/x
printf 'exec touch %s/rebase-todo\n' "$C" > .git/rebase-merge/git-rebase-todo
printf 'exec touch %s/sequencer\n' "$C" > .git/sequencer/todo
printf 'URL: ext::sh -c touch%% %s/remotes\n' "$C" > .git/remotes/origin
printf 'ext::sh -c touch%% %s/branches\n' "$C" > .git/branches/origin
echo "$w/planted/common" > .git/worktrees/x/commondir
git -C libs/lib config core.fsmonitor "$w/planted/fsmonitor"
# A nested repository; a gitdir: file.
mkdir -p evil && git -C evil init -q
mkdir -p evil2 && echo "gitdir: $w/planted/common" > evil2/.git
# Straight at what the host guards.
try() { if sh -c "$1" 2>/dev/null; then echo "WRITTEN: $1"; else echo "refused: $1"; fi; }
try 'echo "gitdir: planted/common" > libs/lib/.git'
try 'rm -f libs/lib/.git'
try 'mv libs libs-moved'
try 'mv libs/lib libs/lib-moved'
try 'mkdir vendor/empty/.git'
try 'rmdir vendor/empty'
"#;

/// The same, as root in the guest: past the guest's own gitdir (unmounted),
/// on a fresh mount of the share, and after remounting it writable in the guest.
const PLANT_AS_ROOT: &str = r#"w=$1
try() { if sh -c "$1" 2>/dev/null; then echo "WRITTEN: $1"; else echo "refused: $1"; fi; }
echo "$w/planted/common" > "$w/.git/commondir"
umount -l "$w/.git"
try "mkdir -p '$w/.git/hooks' && echo x > '$w/.git/hooks/post-checkout'"
try "echo '[core]' > '$w/.git/config'"
try "echo '$w' > '$w/.git/commondir'"
try "echo x >> '$w/.git/packed-refs'"
try "echo x > '$w/.git/objects/info/alternates'"
mount -o remount,rw "$w/.git" 2>/dev/null
try "echo x > '$w/.git/commondir'"
umount -l "$w/libs/lib/.git" 2>/dev/null
try "echo 'gitdir: /tmp' > '$w/libs/lib/.git'"
mkdir -p /mnt/again && mount -t virtiofs hutch-ws /mnt/again && echo "a fresh mount" &&
try "echo x > /mnt/again/.git/commondir" && try "mv /mnt/again/libs /mnt/again/libs-moved" && umount /mnt/again
"#;

/// The everyday git commands of the issue, run on the host by its user,
/// in the project the guest planted into.
fn host_everyday_git(ws: &Path) {
    let run = |args: &[&str]| {
        let _ = host_git(ws, args);
    };
    run(&["status"]);
    run(&["diff"]);
    run(&["diff", "--cached"]);
    run(&["log", "-p", "-3"]);
    run(&["add", "-A"]);
    run(&["commit", "-qm", "the host's commit"]);
    run(&["checkout", "-q", "-b", "host-side"]);
    std::fs::write(ws.join("a.txt"), "changed on the host\n").unwrap();
    run(&["stash"]);
    run(&["stash", "pop"]);
    run(&["commit", "-qam", "on host-side"]);
    run(&["switch", "-q", "main"]);
    run(&["merge", "-q", "--no-edit", "host-side"]);
    run(&["rebase", "-q", "host-side"]);
    run(&["fetch", "-q", "origin"]);
    run(&["pull", "-q", "--no-rebase", "--no-edit", "origin", "main"]);
    run(&["push", "-q", "origin", "main", "host-side"]);
    run(&["submodule", "status", "--recursive"]);
    run(&["lg"]);
    run(&["status"]);
}

/// git in the guest under the host's guard: it works there as usual, its
/// commits reach the host, and nothing planted in the guest runs on the host.
fn git_under_the_hosts_guard(name: &str, project: &Project) {
    let ws = &project.ws;
    // The guest's git sees the host's repository, submodules included.
    let out = exec_ok(
        name,
        "git status --porcelain; git log --format=%s; git submodule status | cut -c1; git -C libs/lib log --format=%s; git config user.name",
    );
    assert_eq!(out, "submodules\none\n \n-\nlib\nHost User\n", "git in the guest");

    // Its commits reach the host's history when the command ends, and the
    // host's HEAD and index follow the branch it switched to.
    let script =
        "echo two > a.txt && git commit -qam two && git switch -q -c agent && echo three > b.txt && git add b.txt && git commit -qm three";
    let out = exec(name, script);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("hutch: git: from the guest: agent (new branch, 2 commits), main "), "{said}");
    assert!(said.contains("hutch: git: HEAD: now on agent, as in the guest"), "{said}");
    assert_eq!(host_git_ok(ws, &["log", "--format=%s %an", "-3"]), "three Host User\ntwo Host User\nsubmodules Host User");
    assert_eq!(host_git_ok(ws, &["symbolic-ref", "--short", "HEAD"]), "agent");
    assert_eq!(host_git_ok(ws, &["status", "--porcelain"]), "", "the host's index follows the guest's commits");

    // The guest plants everything; the host refuses every write it guards,
    // takes none of it, and says so.
    let out = exec_argv(name, &["sh", "-c", PLANT, "sh", project.canary.to_str().unwrap()]);
    let planted = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!planted.contains("WRITTEN"), "{planted}");
    assert_eq!(planted.matches("refused: ").count(), 6, "{planted}");
    assert!(planted.contains("refused agent: a commit in it adds a submodule at sub-evil that the host does not have"), "{planted}");
    assert!(planted.contains("has hooks (") && planted.contains("configuration, info/attributes of its own"), "{planted}");
    let out = exec_argv(name, &["sudo", "-n", "sh", "-c", PLANT_AS_ROOT, "sh", ws.to_str().unwrap()]);
    let as_root = stdout(&out);
    assert!(!as_root.contains("WRITTEN"), "{as_root}{}", stderr(&out));
    let tries = if as_root.contains("a fresh mount") { 9 } else { 7 };
    assert_eq!(as_root.matches("refused: ").count(), tries, "{as_root}{}", stderr(&out));
    let told = format!("{planted}{}", stderr(&out));

    // The nested repositories the guest made are quarantined on the host.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(ws.join("evil/.git.hutch-quarantine").is_dir() && ws.join("evil2/.git.hutch-quarantine").is_file()) {
        assert!(Instant::now() < deadline, "not quarantined: {:?} {:?}", entries(&ws.join("evil")), entries(&ws.join("evil2")));
        std::thread::sleep(Duration::from_millis(100)); // polling a condition with a deadline, not synchronising
    }
    assert!(!ws.join("evil/.git").exists() && !ws.join("evil2/.git").exists());
    // Said at the end of the next command, if the one that made them had ended first.
    let told = format!("{told}{}", stderr(&exec(name, "true")));
    assert!(told.contains("quarantined as evil/.git.hutch-quarantine"), "{told}");
    assert!(told.contains("quarantined as evil2/.git.hutch-quarantine"), "{told}");

    host_everyday_git(ws);
    assert_eq!(entries(&project.canary), Vec::<String>::new(), "git on the host ran what the guest planted");
    assert_eq!(project.planted_in_host_git(), Vec::<String>::new(), "the guest wrote into the host's .git");
    assert!(host_git_ok(ws, &["log", "--format=%s", "main"]).contains("on host-side"), "the host's own commands worked");
    assert!(host_git_ok(&project.root.path().join("origin.git"), &["branch", "--list"]).contains("host-side"), "push worked");
}

#[test]
#[ignore = "needs QEMU and the Debian image: run `cargo xtask e2e`"]
fn the_default_image_is_a_userland_for_coding_agents_on_its_own_disk() {
    let project = Project::new();
    let ws = &project.ws;
    up("e2e-debian", ws, &["--disk", "24G"]);

    // Debian's tools, npm from its release, the npm CLI and the setup hook the
    // image was built with; hutch's init as PID 1; no network device but the
    // link to the proxy (eth0).
    let script = "node -e 'console.log(6 * 7)'; npm --version; python3 -m venv /tmp/venv && /tmp/venv/bin/python -c 'print(\"venv ok\")'; \
                  curl --version | head -1 | cut -d' ' -f1; claude --version >/dev/null && echo claude ok; cat /etc/hutch-e2e-setup; \
                  cat /proc/1/comm; ls /sys/class/net; uname -n";
    let out = exec_ok("e2e-debian", script);
    assert_eq!(
        out, "42\n10.9.9\nvenv ok\ncurl\nclaude ok\nsetup hook ran as root\nhutch-agent\neth0\nlo\nhutch-guest\n",
        "the Debian userland is incomplete"
    );

    // Node.js 22 from its official release, the only one: Debian's nodejs is
    // not installed, and apt would refuse it. A CLI whose `engines` asks for
    // Node 22 (installed by the setup hook with npm's --engine-strict) runs
    // on it, with APIs older lines lack; the hook's apt-get install worked.
    let script = "node --version; for c in node npm npx; do command -v $c; done; ls /usr/bin/node* 2>/dev/null | wc -l; \
                  dpkg-query -W nodejs >/dev/null 2>&1 || echo no nodejs package; grep -c 'Pin-Priority: -1' /etc/apt/preferences.d/hutch-node; \
                  node22-check; hello";
    let out = exec_ok("e2e-debian", script);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.first().is_some_and(|v| v.starts_with("v22.")), "node is not 22.x: {out}");
    let node = lines[0].trim_start_matches('v');
    assert_eq!(
        lines[1..],
        [
            "/usr/local/bin/node",
            "/usr/local/bin/npm",
            "/usr/local/bin/npx",
            "0",
            "no nodejs package",
            "1",
            &format!("3 files, n = 42 (node {node})"),
            "Hello, world!"
        ],
        "{out}"
    );

    // A native addon builds offline (the guest reaches no nodejs.org): npm
    // runs node-gyp, which takes the image's own Node headers (nodedir).
    let script = "mkdir -p /tmp/addon && cd /tmp/addon && echo 'int hutch_addon;' > a.c && \
                  echo '{\"targets\": [{\"target_name\": \"a\", \"sources\": [\"a.c\"]}]}' > binding.gyp && \
                  echo '{\"name\": \"addon\", \"version\": \"1.0.0\"}' > package.json && \
                  npm install --no-audit --no-fund >/dev/null 2>&1 && ls build/Release/a.node";
    assert_eq!(exec_ok("e2e-debian", script), "build/Release/a.node\n", "a native addon did not build against the image's headers");

    // The project comes over virtio-fs (virtiofsd is installed), mounted by the agent under hutch's init.
    let out = exec_ok("e2e-debian", "awk -v d=\"$PWD\" '$2 == d { print $3 }' /proc/mounts");
    assert_eq!(out, "virtiofs\n", "the workspace is not shared over virtio-fs");

    git_under_the_hosts_guard("e2e-debian", &project);

    // What the guest writes in the project is the host user's.
    exec_ok("e2e-debian", "echo hi > made-in-guest");
    assert_eq!(std::fs::metadata(ws.join("made-in-guest")).unwrap().uid(), nix::unistd::getuid().as_raw());

    // node_modules (implied by package.json) is on the VM's disk, not the host's.
    assert!(entries(&ws.join("node_modules")).is_empty(), "the host shows an empty mount point while the VM runs");
    let out = exec_ok(
        "e2e-debian",
        "mkdir -p node_modules/pkg && echo built > node_modules/pkg/out && stat -f -c %T node_modules && df --output=source node_modules | tail -1",
    );
    assert_eq!(out, "ext2/ext3\n/dev/vda\n", "node_modules is not on the VM disk");
    assert!(entries(&ws.join("node_modules")).is_empty(), "guest node_modules leaked to the host");
    assert!(!ws.join(".venv").exists() && !ws.join("target").exists(), "heavy dirs the project does not use appeared");

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
    assert!(!ws.join("node_modules").exists(), "an empty mount point stayed after down");
    up("e2e-debian", ws, &[]);
    assert_eq!(exec_ok("e2e-debian", "cat node_modules/pkg/out"), "built\n");
    // The guest's repository starts again from the host's: its branch, commits and index.
    let host_head =
        format!("{}\n{}\nindex is HEAD", host_git_ok(ws, &["rev-parse", "HEAD"]), host_git_ok(ws, &["symbolic-ref", "--short", "HEAD"]));
    let guest_head = exec_ok(
        "e2e-debian",
        "git rev-parse HEAD; git symbolic-ref --short HEAD; git diff-index --cached --quiet HEAD && echo index is HEAD",
    );
    assert_eq!(guest_head.trim_end(), host_head);
    assert_eq!(code(&e2e().run(&["rm", "-f", "e2e-debian"])), 0);
    assert_eq!(
        entries(ws).iter().filter(|e| e.starts_with(".git")).collect::<Vec<_>>(),
        [".git", ".gitattributes", ".gitmodules"],
        "rm left something in the project"
    );
    assert_eq!(project.planted_in_host_git(), Vec::<String>::new());
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
    // The git guard's namespace is a user namespace here (hutch is not root):
    // the guest gets a repository of its own in a folder the host keeps none in.
    // Node.js 22 is the image's, on every user's PATH and under sudo.
    let script = "id -u; id -g; id -un; echo $HOME; touch from-guest; mkdir node_modules/made-by-user && sudo -n true && echo sudo ok; \
                  git init -q && git -c user.name=u -c user.email=u@h commit -q --allow-empty -m x && git rev-list --count HEAD; \
                  for c in node npx; do command -v $c; done; sudo -n node -p 'process.versions.node.split(\".\")[0]'";
    let out = run(&[], script);
    assert_eq!(out, format!("{uid}\n{gid}\nhutch\n/home/hutch\nsudo ok\n1\n/usr/local/bin/node\n/usr/local/bin/npx\n22\n"));
    let made = std::fs::metadata(ws.join("from-guest")).unwrap();
    assert_eq!((made.uid(), made.gid()), (uid, gid), "a file the guest made is not the host user's");
    // A --ro snapshot is the user's to edit too (and the host's file stays as it was).
    let out = run(&["--ro"], "echo more >> package.json && mkdir new && stat -c %u:%g package.json . new");
    assert_eq!(out, format!("{uid}:{gid}\n").repeat(3));
    assert_eq!(std::fs::read_to_string(ws.join("package.json")).unwrap(), "{}\n");
    assert_eq!(entries(&ws), ["from-guest", "package.json"], "run --rm left something in the project");
}

/// The registry this machine's npm is configured for, and its host name.
fn npm_registry() -> (String, String) {
    let out = Command::new("npm").args(["config", "get", "registry"]).output().expect("npm on the host (scripts/install-deps installs it)");
    let registry = stdout(&out).trim().to_owned();
    assert!(registry.starts_with("https://"), "this machine's npm registry is not https: {registry:?}");
    let host = registry.trim_start_matches("https://").split(['/', ':']).next().unwrap_or_default().to_owned();
    (registry, host)
}

/// One boot for the whole network path (a Debian guest under TCG is the
/// slow part): curl, npm and direct sockets in a real guest, the host's
/// network process between it and everything.
#[test]
#[ignore = "needs QEMU and the Debian image: run `cargo xtask e2e`"]
fn the_guest_reaches_only_what_the_hosts_policy_allows() {
    const SECRET: &str = "sk-e2e-debian-real-value-0123456789";
    const NAME: &str = "e2e-debian-net";
    let api = hutch_tests::web::WebServer::https("127.0.0.2");
    let other = hutch_tests::web::WebServer::http("127.0.0.3");
    let (registry, registry_host) = npm_registry();
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("package.json"), "{\"name\":\"app\",\"version\":\"1.0.0\"}\n").unwrap();
    let config = |extra: &str| {
        format!(
            "[network]\nallow = [\"{api}\", \"{other}\", \"10.0.0.0/8:*\"{extra}]\n\n[secrets.TEST_API_KEY]\nfrom_env = \"HOST_TEST_KEY\"\nhosts = [\"{api}\"]\n",
            api = api.addr,
            other = other.addr,
        )
    };
    let toml = ws.path().join("hutch.toml");
    std::fs::write(&toml, config("")).unwrap();
    // The host trusts the test server's CA (as it would a company's), besides its own store.
    let mut bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.push_str(api.ca_pem.as_deref().unwrap());
    let bundle_path = ws.path().join("host-bundle.pem");
    std::fs::write(&bundle_path, bundle).unwrap();
    let hutch = |args: &[&str]| {
        let mut cmd = e2e().hutch();
        cmd.current_dir(ws.path()).env("HOST_TEST_KEY", SECRET).env("SSL_CERT_FILE", &bundle_path).env_remove("HUTCH_NETWORK");
        cmd.args(args).stdin(Stdio::null()).output().unwrap()
    };
    let image = e2e().debian().to_str().unwrap().to_owned();
    let up = || {
        let out = hutch(&["up", "--name", NAME, "--image", &image, "--workspace", ws.path().to_str().unwrap(), "--cpus", "1"]);
        assert_eq!(code(&out), 0, "hutch up failed:\n{}", stderr(&out));
    };
    up();
    let mut execs = 0;
    let mut guest = |script: &str| {
        execs += 1;
        hutch(&["exec", "--name", NAME, "--", "sh", "-c", script])
    };

    // The guest holds the placeholder, in its environment and in the files
    // the agent wrote; the proxy variables and the CA bundle are there.
    let out = guest(
        "printf '%s\\n' \"$TEST_API_KEY\"; env; cat /etc/environment /etc/npmrc /etc/gitconfig /etc/pip.conf /etc/hutch/ca-bundle.pem",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("hutch-placeholder-TEST_API_KEY-"), "{text}");
    assert!(!text.contains(SECRET), "the real value is in the guest");
    // The proxy is reached over the link (docs/network.md#the-link-qemu).
    assert!(text.contains("HTTPS_PROXY=http://192.168.127.1:") && text.contains("NODE_EXTRA_CA_CERTS=/etc/hutch/ca-bundle.pem"), "{text}");

    // curl's request arrives at the real server with the real value.
    let out = guest(&format!("curl -sS --fail-with-body -H \"Authorization: Bearer $TEST_API_KEY\" {}", api.url("/v1/messages")));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(&format!("authorization: Bearer {SECRET}\n")), "{}", stdout(&out));
    // The guest's system store trusts the VM's CA too: curl told of no bundle.
    let script = format!("env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sS --fail-with-body {}", api.url("/store"));
    let out = guest(&script);
    assert!(stdout(&out).starts_with("GET /store\n"), "{}{}", stdout(&out), stderr(&out));
    // The placeholder sent to a host that is not the secret's: refused.
    let out = guest(&format!("curl -sS -o /dev/null -w '%{{http_code}}' -H \"X-Key: $TEST_API_KEY\" {}", other.url("/leak")));
    assert_eq!(stdout(&out), "403", "{}", stderr(&out));
    // A private address, even inside an allowed range: refused by the proxy.
    let out = guest("curl -sS -o /dev/null -w '%{http_code}' http://10.1.2.3:8080/");
    assert_eq!(stdout(&out), "403", "{}", stderr(&out));
    // Around the proxy: no route at all (the guest has no network device).
    let out = guest(
        "curl -sS --noproxy '*' --connect-timeout 10 http://1.1.1.1/; echo \"curl $?\"; \
                     python3 -c 'import socket; socket.create_connection((\"8.8.8.8\", 53), 10)' 2>&1 | tail -1",
    );
    let text = stdout(&out);
    assert!(
        text.contains("curl 7") && text.contains("Network is unreachable"),
        "a direct connection was not refused: {text}{}",
        stderr(&out)
    );

    // npm, not allowed: the install fails, naming the host and the line to add.
    let install = format!("npm install --no-audit --no-fund --fetch-retries=0 --registry {registry} is-number@7.0.0 2>&1");
    let out = guest(&install);
    let text = stdout(&out);
    assert_ne!(code(&out), 0, "npm reached {registry_host} without being allowed: {text}");
    assert!(
        text.contains(&format!("{registry_host}:443: not on the allow list")) && text.contains(&format!("allow = [\"{registry_host}\"]")),
        "npm's error does not say what to allow:\n{text}"
    );
    // Allowed (the next `up` gives the running network process the new
    // policy; the VM and its connections stay): it installs through the proxy.
    std::fs::write(&toml, config(&format!(", \"{registry_host}\""))).unwrap();
    up();
    let out = guest(&format!("{install} && node -e \"console.log(require('is-number')(7))\""));
    assert_eq!(code(&out), 0, "npm install through the proxy failed:\n{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).ends_with("true\n"), "{}", stdout(&out));

    // The audit log: one line per decision and per exec, no secret value.
    let log = hutch_tests::audit_log(e2e().state.path());
    assert!(!log.contains(SECRET), "the real value is in the audit log");
    let events: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|e| e["vm"] == NAME).collect();
    assert_eq!(events.iter().filter(|e| e["event"] == "exec").count(), execs, "{log}");
    let egress: Vec<_> = events.iter().filter(|e| e["event"] == "egress").collect();
    let decision =
        |host: String| egress.iter().filter(|e| e["host"] == host.as_str()).map(|e| e["decision"].as_str().unwrap()).collect::<Vec<_>>();
    // Each intercepted CONNECT, then its request (with the secret, by name).
    assert_eq!(decision(api.addr.ip().to_string()), ["allow"; 4], "{log}");
    assert!(egress.iter().any(|e| e["secrets"] == serde_json::json!(["TEST_API_KEY"]) && e["status"] == 200), "{log}");
    let leak = egress.iter().find(|e| e["path"] == "/leak").expect("the refused placeholder is logged");
    assert!(leak["reason"].as_str().unwrap().contains("placeholder of secret TEST_API_KEY"), "{leak}");
    assert_eq!(decision("10.1.2.3".into()), ["deny"], "{log}");
    let npm = decision(registry_host.clone());
    let first_allowed = npm.iter().position(|d| *d == "allow").expect("npm's allowed requests are logged");
    assert!(
        first_allowed > 0 && npm[..first_allowed].iter().all(|d| *d == "deny") && npm[first_allowed..].iter().all(|d| *d == "allow"),
        "{npm:?}"
    );
    assert_eq!(egress.len(), 4 + 1 + 1 + npm.len(), "a request was not logged exactly once:\n{log}");
    let shown = hutch(&["audit", "--name", NAME]);
    assert!(stdout(&shown).contains(&format!("egress deny  CONNECT {registry_host}:443")), "{}", stdout(&shown));

    // The policy changes while the VM runs (issue 28), on the same boot.
    live_changes(&hutch, ws.path(), &config(&format!(", \"{registry_host}\"")), &api);

    // `down` stops the network process with the VM.
    assert_eq!(code(&hutch(&["down", NAME])), 0);
    assert!(
        !hutch_tests::daemon_running(&e2e().state.path().join(format!("vms/{NAME}/net/net.log"))),
        "the network process outlived the VM"
    );
    assert_eq!(code(&hutch(&["rm", "-f", NAME])), 0);
}

/// The network of a running Debian guest, changed without a restart: a
/// denied host allowed with `hutch allow`, a secret refused for the wrong
/// method, a `tcp://` rule reaching a test server on one port while another
/// is refused, `mode = "ask"` answered from another terminal. `config` is
/// the VM's current hutch.toml.
fn live_changes(hutch: &dyn Fn(&[&str]) -> Output, ws: &Path, config: &str, api: &hutch_tests::web::WebServer) {
    const NAME: &str = "e2e-debian-net";
    let late = hutch_tests::web::WebServer::http("127.0.0.4");
    let pid_file = e2e().state.path().join(format!("vms/{NAME}/net/net.pid"));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let guest = |script: &str| hutch(&["exec", "--name", NAME, "--", "sh", "-c", script]);
    let status = |args: &str| stdout(&guest(&format!("curl -sS -o /dev/null -w '%{{http_code}}' {args}")));

    // Denied, then allowed live: the next request passes, nothing restarted.
    assert_eq!(status(&late.url("/before")), "403");
    let out = hutch(&["allow", "--name", NAME, &late.addr.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&guest(&format!("curl -sS {}", late.url("/live")))).starts_with("GET /live\n"));
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid, "hutch allow restarted the network process");

    // The secret, scoped to GET: a POST carrying its placeholder is refused
    // (`hutch up` takes the edited configuration in place).
    let scoped = config.replace("[secrets.TEST_API_KEY]\n", "[secrets.TEST_API_KEY]\nmethods = [\"GET\"]\n");
    std::fs::write(ws.join("hutch.toml"), &scoped).unwrap();
    let image = e2e().debian().to_str().unwrap().to_owned();
    let up = |extra: &[&str]| {
        let mut args = vec!["up", "--name", NAME, "--image", &image, "--workspace", ws.to_str().unwrap(), "--cpus", "1"];
        args.extend_from_slice(extra);
        let out = hutch(&args);
        assert_eq!(code(&out), 0, "hutch up failed:\n{}", stderr(&out));
    };
    up(&[]);
    let auth = "-H \"Authorization: Bearer $TEST_API_KEY\"";
    assert_eq!(status(&format!("{auth} {}", api.url("/v1/read"))), "200");
    assert_eq!(status(&format!("-X POST {auth} {}", api.url("/v1/write"))), "403");
    let log = hutch_tests::audit_log(e2e().state.path());
    assert!(log.contains("was sent with POST, which is not among its methods (GET)"), "{log}");

    // A tcp:// rule: a program told to use no proxy reaches the server
    // through its route; another port is refused.
    let out = hutch(&["allow", "--name", NAME, &format!("tcp://{}", late.addr)]);
    let route = format!("127.77.0.1:{}", late.addr.port());
    assert!(stdout(&out).contains(&format!("connect to {route}")), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&guest(&format!("curl -sS --noproxy '*' http://{route}/routed"))).starts_with("GET /routed\n"));
    let other_port = late.addr.port() ^ 1;
    let out = guest(&format!("curl -sS --noproxy '*' --connect-timeout 10 http://127.77.0.1:{other_port}/; echo \"curl $?\""));
    assert!(stdout(&out).contains("curl 7"), "another port of the route's address was not refused: {}", stdout(&out));
    assert_eq!(status(&format!("http://{}:{other_port}/", late.addr.ip())), "403");

    // Ask mode, answered from another terminal while `hutch audit -f` shows the request waiting.
    let asked = hutch_tests::web::WebServer::http("127.0.0.4");
    up(&["--network", "ask"]);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid, "--network ask restarted the network process");
    let mut follow = e2e().hutch();
    follow.args(["audit", "-f", "--name", NAME]);
    let log = hutch_tests::pty::OnPty::spawn(follow, 40, 250);
    log.wait_for("wait for `hutch allow`/`hutch deny`", Duration::from_secs(60));
    let mut waiting = e2e().hutch();
    waiting.args(["exec", "--name", NAME, "--", "curl", "-sS", &asked.url("/asked")]).stdin(Stdio::null()).stdout(Stdio::piped());
    let waiting = waiting.spawn().unwrap();
    log.wait_for(&format!("ask    GET {}", asked.addr), Duration::from_secs(60));
    let out = hutch(&["allow", "--name", NAME, &asked.addr.to_string()]);
    assert!(stdout(&out).contains(&format!("answered the waiting requests for {}", asked.addr)), "{}{}", stdout(&out), stderr(&out));
    let out = waiting.wait_with_output().unwrap();
    assert!(stdout(&out).starts_with("GET /asked\n"), "{}", stdout(&out));
    drop(log);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid, "the network process was restarted");
}

/// What a guest says about itself: its machine id, 16 bytes of its
/// `/dev/urandom` in hex, and whether an earlier run's file is in its /tmp;
/// then where the command runs and a file of the host project.
const IDENTITY: &str = "cat /etc/machine-id; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; \
                        if [ -e /tmp/left-by-a-run ]; then echo dirty; else echo clean; fi; echo mark > /tmp/left-by-a-run; \
                        pwd; cat from-the-host";

/// The pool VMs `hutch ls --json` lists, with their states.
fn pool_vms() -> Vec<(String, String)> {
    let out = e2e().run(&["ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|vm| !vm["pool"].is_null())
        .map(|vm| (vm["name"].as_str().unwrap().to_owned(), vm["state"].as_str().unwrap().to_owned()))
        .collect()
}

/// One warm pool of one VM, whose boots are the test's only boots: the
/// first run takes the VM `hutch warm` made, the pool refills behind it, the
/// second run takes the refill. Each gets the project at its path, a clean
/// disk, a machine id and RNG of its own, and the network policy in force
/// when it runs (a host allowed after the VM was warmed is reachable: the
/// network process the keeper started takes the run's policy in place).
#[test]
#[ignore = "needs QEMU and the Debian image: run `cargo xtask e2e`"]
fn warm_runs_get_fresh_machines_and_the_pool_refills() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("hutch.toml"), "[warm]\ncount = 1\n").unwrap();
    std::fs::write(ws.path().join("from-the-host"), "host data\n").unwrap();
    let image = e2e().debian().to_str().unwrap().to_owned();
    let settings = ["--image", image.as_str(), "--workspace", ws.path().to_str().unwrap(), "--cpus", "1"];
    let hutch = |verb: &[&str], rest: &[&str]| {
        let out = e2e().hutch().current_dir(ws.path()).args(verb).args(settings).args(rest).stdin(Stdio::null()).output().unwrap();
        assert_eq!(code(&out), 0, "hutch {verb:?} failed:\n{}{}", stdout(&out), stderr(&out));
        stdout(&out)
    };

    let out = hutch(&["warm", "--wait"], &[]);
    assert!(out.ends_with(&format!("1 ready VM for {}\n", ws.path().display())), "{out}");
    let first = pool_vms();
    assert!(first.len() == 1 && first[0].1 == "ready", "{first:?}");
    let net_pid = e2e().state.path().join("vms").join(&first[0].0).join("net/net.pid");
    assert!(net_pid.exists(), "the ready VM has no network process");

    // Allowed only now, after the VM was warmed.
    let web = hutch_tests::web::WebServer::http("127.0.0.6");
    std::fs::write(ws.path().join("hutch.toml"), format!("[warm]\ncount = 1\n[network]\nallow = [\"{}\"]\n", web.addr)).unwrap();
    let script = format!("{IDENTITY}; curl -sS {}", web.url("/warm"));

    let run = |taken: &str| {
        let out = hutch(&["run", "--rm"], &["--", "sh", "-c", &script]);
        assert!(!e2e().state.path().join("vms").join(taken).exists(), "the run did not take the ready VM {taken}");
        let lines: Vec<String> = out.lines().map(str::to_owned).collect();
        // The server answers with the request line and headers.
        assert!(lines.len() > 5 && lines[5] == "GET /warm", "the run's policy did not reach its network process: {out}");
        assert!(lines[0].len() == 32 && lines[0].bytes().all(|b| b.is_ascii_hexdigit()), "no machine id: {out}");
        assert_eq!(lines[1].len(), 32, "{out}");
        assert_eq!(lines[2], "clean", "a file of an earlier run is in this VM's /tmp");
        assert_eq!((lines[3].as_str(), lines[4].as_str()), (ws.path().to_str().unwrap(), "host data"));
        lines
    };
    let one = run(&first[0].0);

    // `[warm] count = 1`: the pool refills behind the run that emptied it.
    let deadline = Instant::now() + Duration::from_secs(300);
    let second = loop {
        let now = pool_vms();
        if now.len() == 1 && now[0].1 == "ready" {
            break now;
        }
        assert!(Instant::now() < deadline, "the pool did not refill: {now:?}");
        std::thread::sleep(Duration::from_millis(500)); // polling a condition with a deadline
    };
    assert_ne!(second[0].0, first[0].0);
    let two = run(&second[0].0);
    assert_ne!(one[0], two[0], "two runs share a machine id");
    assert_ne!(one[1], two[1], "two runs read the same random bytes");

    let out = hutch(&["warm", "--count", "0"], &[]);
    assert!(out.starts_with("dropped "), "{out}");
    assert!(pool_vms().is_empty());
    assert_eq!(entries(ws.path()), ["from-the-host", "hutch.toml"], "a warm run left something in the project");
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/warm-")), "left running: {:?}", e2e().vm_processes());
}

/// `hutch fork` of a running VM: the children boot from the parent's disk
/// as it was (files in the home and in a heavy dir), each a machine of its
/// own with its own network process, placeholders and audit log, and from
/// then on the three go their own ways.
#[test]
#[ignore = "needs QEMU and the Debian image: run `cargo xtask e2e`"]
fn forks_start_from_the_parents_disk_and_go_their_own_ways() {
    const PARENT: &str = "e2e-fork";
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(ws.path().join("package.json"), "{}\n").unwrap();
    let secret = "[secrets.E2E_TOKEN]\nfrom_env = \"E2E_HOST_TOKEN\"\nhosts = [\"example.com\"]\n";
    std::fs::write(ws.path().join("hutch.toml"), secret).unwrap();
    up(PARENT, ws.path(), &[]);
    let about = "cat /etc/machine-id; printf '%s\\n' \"$E2E_TOKEN\"; cat ~/state node_modules/pkg/out";
    let parent =
        exec_ok(PARENT, &format!("echo prepared > ~/state; mkdir -p node_modules/pkg; echo built > node_modules/pkg/out; {about}"));

    let out = e2e().run(&["fork", PARENT, "--count", "2", "--name-prefix", "e2e-child"]);
    assert_eq!(code(&out), 0, "hutch fork failed:\n{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "e2e-child-1\ne2e-child-2\n");
    let children = ["e2e-child-1", "e2e-child-2"];
    let mut seen = vec![parent.lines().map(str::to_owned).collect::<Vec<_>>()];
    for child in children {
        let lines: Vec<String> = exec_ok(child, about).lines().map(str::to_owned).collect();
        assert_eq!(&lines[2..], ["prepared", "built"], "{child} does not start from the parent's disk");
        assert!(lines[1].starts_with("hutch-placeholder-E2E_TOKEN-"), "{lines:?}");
        for other in &seen {
            assert_ne!(lines[0], other[0], "{child} shares a machine id");
            assert_ne!(lines[1], other[1], "{child} shares a placeholder");
        }
        seen.push(lines);
        let vm = e2e().state.path().join("vms").join(child);
        assert!(hutch_tests::daemon_running(&vm.join("net/net.log")), "{child} has no network process of its own");
        // The project's audit log names each line's VM: the child's lines are its own commands only.
        let audit: String = hutch_tests::audit_log(e2e().state.path())
            .lines()
            .filter(|l| l.contains(&format!("\"vm\":\"{child}\"")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(audit.contains("/etc/machine-id") && !audit.contains("echo prepared"), "{child}'s audit lines are not its own:\n{audit}");
    }

    // From here on, each writes its own disk.
    exec_ok("e2e-child-1", "echo one > ~/mine");
    exec_ok(PARENT, "echo later > ~/later");
    let apart = "for f in mine later; do [ -e ~/$f ] && echo \"has $f\"; done; echo checked";
    assert_eq!(exec_ok("e2e-child-2", apart), "checked\n");
    assert_eq!(exec_ok(PARENT, apart), "has later\nchecked\n");
    assert_eq!(exec_ok("e2e-child-1", apart), "has mine\nchecked\n");

    for vm in [PARENT, children[0], children[1]] {
        assert_eq!(code(&e2e().run(&["rm", "-f", vm])), 0);
    }
    assert!(e2e().vm_processes().iter().all(|(_, c)| !c.contains("/vms/e2e-")), "left running: {:?}", e2e().vm_processes());
}
