//! A synced workspace on this machine: the real `hutch sync --watch` against
//! a real agent whose copy lives under a private prefix (the "guest"). Edits
//! on either side reach the other; both-sided edits keep the host's version
//! and put the guest's beside it; what a hostile guest writes through
//! symlinks or in huge files is refused and named; random operations on
//! both sides with random flush points converge.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hutch_tests::snapshot::{SnapshotAgent, listing};
use hutch_tests::{binaries, code, stderr};

/// `hutch sync --watch` running against the agent, stopped on drop.
struct Live {
    child: Child,
    state: tempfile::TempDir,
    root: PathBuf,
    addr: String,
}

impl Live {
    fn start(s: &SnapshotAgent) -> Live {
        let state = tempfile::tempdir().unwrap();
        let root = s.root();
        let log = std::fs::File::create(state.path().join("watch.log")).unwrap();
        let mut child = Command::new(&binaries().hutch)
            .args(["sync", "--watch", "--workspace"])
            .arg(&root)
            .env("HUTCH_ADDR", &s.agent.addr)
            .env("HUTCH_STATE_DIR", state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "hutch sync --watch did not start");
        Live { child, state, root, addr: s.agent.addr.clone() }
    }

    /// `hutch SUB --workspace ROOT` against the running watch's agent and state.
    fn hutch(&self, sub: &str) -> std::process::Output {
        let out = Command::new(&binaries().hutch)
            .args([sub, "--workspace"])
            .arg(&self.root)
            .env("HUTCH_ADDR", &self.addr)
            .env("HUTCH_STATE_DIR", self.state.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "hutch {sub} failed: {}", stderr(&out));
        out
    }

    /// `hutch sync` against the running watch: both directions flushed.
    fn flush(&self) -> String {
        stderr(&self.hutch("sync"))
    }

    /// Flushes until a flush finds nothing to do either way.
    fn settle(&self) {
        for _ in 0..10 {
            if self.flush().contains("(pushed 0, received 0;") {
                return;
            }
        }
        panic!("the sync did not settle:\n{}", self.log());
    }

    /// What `hutch sync --watch` said so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("watch.log")).unwrap_or_default()
    }

    fn diff(&self) -> (String, String) {
        let out = self.hutch("diff");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr(&out))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn write(root: &Path, rel: &str, data: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// The two trees, without folder mtimes (a synced workspace keeps folders'
/// modes, not their mtimes).
fn trees(host: &Path, guest: &Path) -> (Vec<String>, Vec<String>) {
    let strip = |m: std::collections::BTreeMap<String, String>| -> Vec<String> {
        m.into_iter()
            .filter(|(k, _)| k != ".")
            .map(|(k, v)| if v.starts_with("dir ") { format!("{k}: {}", v.split(" @").next().unwrap_or(&v)) } else { format!("{k}: {v}") })
            .collect()
    };
    (strip(listing(host, &[".git"])), strip(listing(guest, &[".git"])))
}

fn setup() -> (SnapshotAgent, PathBuf, PathBuf) {
    let s = SnapshotAgent::start();
    let root = s.root();
    write(&root, "README.md", "hello\n");
    write(&root, "src/main.rs", "fn main() {}\n");
    write(&root, ".gitignore", "build/\n");
    write(&root, ".git/config", "[core]\n");
    let guest = s.snapshot(&root);
    (s, root, guest)
}

#[test]
fn edits_reach_the_other_side_both_ways() {
    let (s, root, guest) = setup();
    let live = Live::start(&s);
    live.settle();
    let (h, g) = trees(&root, &guest);
    assert_eq!(h, g, "{}", live.log());
    assert!(!guest.join(".git").exists(), ".git must stay out of the copy");

    // Host → guest: create, edit, chmod, rename, delete, symlink.
    write(&root, "new/file.txt", "new\n");
    write(&root, "README.md", "HELLO\n");
    std::fs::set_permissions(root.join("src/main.rs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(root.join("src/main.rs"), root.join("src/lib.rs")).unwrap();
    symlink("src/lib.rs", root.join("link")).unwrap();
    live.settle();
    let (h, g) = trees(&root, &guest);
    assert_eq!(h, g);

    // Guest → host, including a new folder, a deletion and an ignored file.
    write(&guest, "guest/made.txt", "from the guest\n");
    std::fs::remove_file(guest.join("new/file.txt")).unwrap();
    std::fs::set_permissions(guest.join("src/lib.rs"), std::fs::Permissions::from_mode(0o700)).unwrap();
    write(&guest, "build/out.o", "binary");
    live.settle();
    assert_eq!(std::fs::read_to_string(root.join("guest/made.txt")).unwrap(), "from the guest\n");
    assert!(!root.join("new/file.txt").exists());
    assert_eq!(std::fs::metadata(root.join("src/lib.rs")).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(!root.join("build").exists(), "an ignored guest file reached the host");
    let (mut h, mut g) = trees(&root, &guest);
    g.retain(|l| !l.starts_with("build"));
    h.retain(|l| !l.starts_with("build"));
    assert_eq!(h, g);
}

#[test]
fn a_conflict_keeps_the_hosts_version_and_the_guests_beside_it() {
    let (s, root, guest) = setup();
    let live = Live::start(&s);
    live.settle();
    // Stop the guest's reports from racing the host's push: both edits land
    // before either side looks.
    write(&root, "README.md", "host version\n");
    write(&guest, "README.md", "guest version, longer\n");
    live.settle();
    assert_eq!(std::fs::read_to_string(root.join("README.md")).unwrap(), "host version\n");
    assert_eq!(std::fs::read_to_string(guest.join("README.md")).unwrap(), "host version\n");
    assert_eq!(std::fs::read_to_string(root.join("README.md.hutch-guest")).unwrap(), "guest version, longer\n");
    assert_eq!(std::fs::read_to_string(guest.join("README.md.hutch-guest")).unwrap(), "guest version, longer\n");
    let (patch, notes) = live.diff();
    assert!(patch.contains("-host version\n+guest version, longer\n"), "{patch}");
    assert!(notes.contains("conflict on README.md"), "{notes}");
}

#[test]
fn hostile_guest_writes_are_refused_and_named() {
    let (s, root, guest) = setup();
    let outside = s.host.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let live = Live::start(&s);
    live.settle();
    // A symlink out of the project, then a write "through" it.
    symlink(&outside, guest.join("escape")).unwrap();
    symlink("../../../../etc/passwd", guest.join("src/passwd")).unwrap();
    // A file larger than the host takes (sparse: no disk needed).
    let huge = std::fs::File::create(guest.join("huge.bin")).unwrap();
    huge.set_len(300 << 20).unwrap();
    drop(huge);
    live.settle();
    assert!(std::fs::symlink_metadata(root.join("escape")).is_err(), "an escaping symlink reached the host");
    assert!(std::fs::symlink_metadata(root.join("src/passwd")).is_err(), "an escaping symlink reached the host");
    assert!(!root.join("huge.bin").exists(), "a huge file reached the host");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    let (_, notes) = live.diff();
    for named in ["escape", "src/passwd", "huge.bin"] {
        assert!(notes.contains(&format!("refused the guest's change to {named}:")), "{named} not named:\n{notes}");
    }
}

/// Random operations on both sides, with random flush points; at the end
/// both trees are equal (conflict copies are on both sides too).
#[test]
fn random_operations_on_both_sides_converge() {
    let cases: u64 = std::env::var("HUTCH_SYNC_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    for seed in 1..=cases {
        let (s, root, guest) = setup();
        let live = Live::start(&s);
        live.settle();
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let names = ["a", "b", "c", "d/e", "d/f", "g/h/i"];
        for step in 0..40 {
            let side = if next(2) == 0 { &root } else { &guest };
            let name = names[next(names.len() as u64) as usize];
            let path = side.join(name);
            match next(6) {
                0 | 1 => {
                    let _ = std::fs::create_dir_all(path.parent().unwrap());
                    let _ = std::fs::write(&path, format!("{seed}-{step}-{}\n", "x".repeat(next(50) as usize)));
                }
                2 => {
                    let _ = std::fs::remove_file(&path);
                }
                3 => {
                    let other = side.join(names[next(names.len() as u64) as usize]);
                    if other.parent().is_some_and(Path::exists) {
                        let _ = std::fs::rename(&path, &other);
                    }
                }
                4 => {
                    let mode = if next(2) == 0 { 0o644 } else { 0o755 };
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
                }
                _ => {
                    let _ = std::fs::create_dir_all(path.parent().unwrap());
                    let _ = std::fs::remove_file(&path);
                    let _ = symlink(names[next(names.len() as u64) as usize], &path);
                }
            }
            if next(5) == 0 {
                live.flush();
            }
        }
        live.settle();
        let (h, g) = trees(&root, &guest);
        assert_eq!(h, g, "seed {seed}: the trees differ");
    }
}
