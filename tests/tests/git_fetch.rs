//! Taking a guest's commits into the host's repository (`hutch fetch`)
//! against a real agent on a Unix socket: the agent runs `git upload-pack`
//! on "the guest's" gitdir (a gitdir of its own over the host's worktree,
//! made as the agent's `Prepare` makes one), hutch's bridge relays it to
//! host git, and hutch applies what arrived. Real repositories throughout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hutch_tests::{Agent, code, stderr};

/// Runs git with a fixed identity; panics with its output on failure.
fn git(dir: &Path, env: &[(&str, &Path)], args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=Test", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]).args(args).current_dir(dir);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// A host repository (`ws`) and "the guest's" gitdir over the same worktree.
struct World {
    _root: tempfile::TempDir,
    ws: PathBuf,
    guest: PathBuf,
    agent: Agent,
}

impl World {
    fn new() -> World {
        let root = tempfile::tempdir().unwrap();
        let ws = root.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        git(&ws, &[], &["init", "-q"]);
        std::fs::write(ws.join("a.txt"), "one\n").unwrap();
        std::fs::write(ws.join("b.txt"), "b\n").unwrap();
        git(&ws, &[], &["add", "."]);
        git(&ws, &[], &["commit", "-qm", "one"]);
        git(&ws, &[], &["branch", "side"]);
        git(&ws, &[], &["tag", "v0"]);
        // The guest's gitdir: the host's objects borrowed, its refs, HEAD and index copied.
        let guest = root.path().join("guest.git");
        git(root.path(), &[], &["init", "-q", "--bare", guest.to_str().unwrap()]);
        git(&guest, &[], &["config", "core.bare", "false"]);
        std::fs::write(guest.join("objects/info/alternates"), format!("{}\n", ws.join(".git/objects").display())).unwrap();
        std::fs::write(guest.join("packed-refs"), git(&ws, &[], &["for-each-ref", "--format=%(objectname) %(refname)"]) + "\n").unwrap();
        std::fs::copy(ws.join(".git/HEAD"), guest.join("HEAD")).unwrap();
        std::fs::copy(ws.join(".git/index"), guest.join("index")).unwrap();
        let agent = Agent::unix();
        World { _root: root, ws, guest, agent }
    }

    /// git as the guest runs it: its own gitdir, the shared worktree.
    fn guest_git(&self, args: &[&str]) -> String {
        git(&self.ws, &[("GIT_DIR", &self.guest), ("GIT_WORK_TREE", &self.ws)], args)
    }

    fn host_git(&self, args: &[&str]) -> String {
        git(&self.ws, &[], args)
    }

    fn fetch(&self) -> Output {
        let args = ["fetch", "--workspace", self.ws.to_str().unwrap(), "--guest-gitdir", self.guest.to_str().unwrap(), "--keep-as", "vm"];
        self.agent.hutch().args(args).stdin(Stdio::null()).output().unwrap()
    }
}

#[test]
fn the_guests_commits_arrive_and_what_must_not_is_refused_and_named() {
    let w = World::new();
    // The host user stages a change the guest's commits do not touch.
    std::fs::write(w.ws.join("b.txt"), "b staged on the host\n").unwrap();
    w.host_git(&["add", "b.txt"]);

    // The guest: a commit on main; a new branch; a branch diverging from a
    // host commit; a branch adding a submodule; a new tag and a changed one.
    std::fs::write(w.ws.join("a.txt"), "two\n").unwrap();
    w.guest_git(&["commit", "-qm", "two", "a.txt"]);
    let main = w.guest_git(&["rev-parse", "main"]);
    w.guest_git(&["branch", "feature"]);
    let host_side = w.host_git(&["commit-tree", "-p", "side", "-m", "host on side", "side^{tree}"]);
    w.host_git(&["update-ref", "refs/heads/side", &host_side]);
    let guest_side = w.guest_git(&["commit-tree", "-p", "side", "-m", "guest on side", "HEAD^{tree}"]);
    w.guest_git(&["update-ref", "refs/heads/side", &guest_side]);
    // A commit whose tree holds a gitlink at `evil`.
    let index = w.guest.join("index.sub");
    let sub_env = [("GIT_DIR", w.guest.as_path()), ("GIT_INDEX_FILE", index.as_path())];
    git(&w.ws, &sub_env, &["read-tree", "HEAD"]);
    git(&w.ws, &sub_env, &["update-index", "--add", "--cacheinfo", &format!("160000,{main},evil")]);
    let with_gitlink = git(&w.ws, &sub_env, &["write-tree"]);
    let commit = w.guest_git(&["commit-tree", "-p", "HEAD", "-m", "adds a submodule", &with_gitlink]);
    w.guest_git(&["update-ref", "refs/heads/subs", &commit]);
    w.guest_git(&["tag", "v1"]);
    w.guest_git(&["tag", "-f", "v0", "HEAD"]);

    let out = w.fetch();
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(err.contains("from the guest: feature (new branch, 1 commit), main "), "{err}");
    assert!(err.contains("tag v1 (new,"), "{err}");
    assert!(
        err.contains("refused side: it diverged from the host's; merge or rebase it yourself (kept as refs/hutch/vm/heads/side)"),
        "{err}"
    );
    assert!(err.contains("refused subs: a commit in it adds a submodule at evil that the host does not have"), "{err}");
    assert!(err.contains("refused tag v0: the host has a different tag of that name"), "{err}");

    assert_eq!(w.host_git(&["rev-parse", "main"]), main, "main is fast-forwarded");
    assert_eq!(w.host_git(&["rev-parse", "feature"]), main);
    assert_eq!(w.host_git(&["rev-parse", "refs/hutch/vm/heads/side"]), w.guest_git(&["rev-parse", "side"]));
    assert!(w.host_git(&["log", "--format=%s", "side"]).starts_with("host on side"), "the host's side is its own");
    assert_eq!(w.host_git(&["for-each-ref", "--format=%(refname)", "refs/heads/subs"]), "", "no branch with a new gitlink");
    // The index followed main, and what the user staged is still staged.
    assert_eq!(w.host_git(&["status", "--porcelain"]), "M  b.txt");

    // Nothing new: nothing said, nothing refused again.
    let again = w.fetch();
    assert_eq!((code(&again), stderr(&again).as_str()), (0, "hutch: git: nothing new from the guest\n"));

    // The guest switches branch: without a record of what the guest was
    // given (an agent by address), the host's HEAD stays, and that is said.
    w.guest_git(&["checkout", "-q", "feature"]);
    let out = w.fetch();
    assert!(stderr(&out).contains("HEAD: the guest is on feature, the host stays on main"), "{}", stderr(&out));
    assert_eq!(w.host_git(&["symbolic-ref", "HEAD"]), "refs/heads/main");
}

#[test]
fn bad_ref_names_are_never_written_and_receive_pack_is_not_served() {
    let w = World::new();
    // Names git takes but hutch does not: a look-alike of `main` (Cyrillic
    // `а`), and one git reserves.
    w.guest_git(&["branch", "m\u{430}in"]);
    w.guest_git(&["branch", "ok-name"]);
    let out = w.fetch();
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(err.contains("refused m\u{430}in: a name with '\u{430}', which branch names may not hold: not taken"), "{err}");
    assert_eq!(w.host_git(&["rev-parse", "ok-name"]), w.guest_git(&["rev-parse", "HEAD"]));
    let refs = w.host_git(&["for-each-ref", "--format=%(refname)"]);
    assert!(!refs.contains('\u{430}'), "{refs}");

    // The bridge serves fetches only.
    let out = Command::new(&hutch_tests::binaries().hutch)
        .args(["git-bridge", "git-receive-pack"])
        .env("HUTCH_GIT_BRIDGE_ADDR", &w.agent.addr)
        .env("HUTCH_GIT_BRIDGE_GITDIR", &w.guest)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 128);
    assert!(stderr(&out).contains("only fetches are served"), "{}", stderr(&out));
}
