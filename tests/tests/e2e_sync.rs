//! A synced workspace (`hutch up --sync`) in a real QEMU guest (`cargo xtask
//! e2e` runs this): no share is mounted, the copy is the guest's own, edits
//! cross both ways (an exec sees the host's edits made before it, and the
//! host has the guest's when the exec returns), and the coherence of a small
//! edit in each direction is measured while a command runs: its median must
//! be within the bound the docs state.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hutch_tests::vm::e2e;
use hutch_tests::{code, stderr, stdout};

const SMALL: &[&str] = &["--cpus", "1", "--memory", "256"];
/// The stated bound on a small edit's median coherence under TCG, each way
/// (docs/workspace-sync.md).
const BOUND: Duration = Duration::from_millis(200);
/// Edits timed in each direction.
const EDITS: usize = 9;

fn exec(name: &str, script: &str, ws: &Path) -> std::process::Output {
    e2e().run(&["exec", "--name", name, "--", "sh", "-c", script, "sh", ws.to_str().unwrap()])
}

/// The guest prints each new version of `probe` it sees; on `write N` it writes `N` to `back`.
const GUEST: &str = r#"cd "$1" || exit 1
echo ready
last=""
while :; do
  v=""; [ -e probe ] && read -r v < probe
  if [ -n "$v" ] && [ "$v" != "$last" ]; then echo "seen $v"; last=$v; fi
  if [ -e request ]; then read -r r < request; rm -f request; echo "$r" > back; fi
  [ "$v" = "stop" ] && exit 0
  usleep 2000 2>/dev/null || sleep 0.002
done"#;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn a_synced_workspace_crosses_both_ways_within_its_bound() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let root = ws.path().canonicalize().unwrap();
    std::fs::write(root.join("hello.sh"), "echo hello from the host\n").unwrap();
    std::fs::set_permissions(root.join("hello.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), "[core]\n").unwrap();
    let mut args = vec!["up", "--sync", "--name", "e2e-sync", "--workspace", root.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // No share: the copy is on the guest's own file system, without .git.
    let out = exec("e2e-sync", "awk -v d=\"$1\" '$2 == d' /proc/mounts; cd \"$1\" && ./hello.sh && ls -a", &root);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("hello from the host\n"), "{}", stdout(&out));
    assert!(!stdout(&out).contains(".git"), "{}", stdout(&out));

    // An exec sees the host's edit made just before it, and the host has the
    // guest's when it returns.
    std::fs::write(root.join("edited.txt"), "made on the host\n").unwrap();
    let out = exec("e2e-sync", "cd \"$1\" && cat edited.txt && printf 'made in the guest\\n' > guest.txt && chmod 640 guest.txt", &root);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "made on the host\n"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(root.join("guest.txt")).unwrap(), "made in the guest\n");
    assert_eq!(std::fs::metadata(root.join("guest.txt")).unwrap().permissions().mode() & 0o777, 0o640);

    // Coherence while a command runs: host → guest, then guest → host.
    let mut child = e2e()
        .hutch()
        .args(["exec", "--name", "e2e-sync", "--", "sh", "-c", GUEST, "sh", root.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let mut to_guest = Vec::new();
    for i in 0..EDITS {
        let began = Instant::now();
        std::fs::write(root.join("probe"), format!("v{i}\n")).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), format!("seen v{i}"));
        to_guest.push(began.elapsed());
    }
    let mut to_host = Vec::new();
    for i in 0..EDITS {
        let began = Instant::now();
        // The request is a host edit: the round trip less the host → guest
        // median is the guest → host figure.
        std::fs::write(root.join("request"), format!("r{i}\n")).unwrap();
        loop {
            if std::fs::read_to_string(root.join("back")).is_ok_and(|t| t == format!("r{i}\n")) {
                break;
            }
            assert!(began.elapsed() < Duration::from_secs(20), "the guest's edit {i} did not reach the host");
            std::thread::sleep(Duration::from_millis(2));
        }
        to_host.push(began.elapsed());
    }
    std::fs::write(root.join("probe"), "stop\n").unwrap();
    let _ = child.stdin.take().unwrap().flush();
    assert!(child.wait().unwrap().success());
    let down = median(to_guest.clone());
    let up = median(to_host.clone()).saturating_sub(down);
    eprintln!("coherence, median of {EDITS}: host → guest {down:?}, guest → host {up:?} (all: {to_guest:?} / {to_host:?})");
    assert!(down <= BOUND, "host → guest median {down:?} is over {BOUND:?}");
    assert!(up <= BOUND, "guest → host median {up:?} is over {BOUND:?}");

    // `down` brings the guest's last edit to the host first.
    let out = exec("e2e-sync", "cd \"$1\" && printf last > last.txt", &root);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = e2e().run(&["down", "e2e-sync"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(root.join("last.txt")).unwrap(), "last");
    let out = e2e().run(&["rm", "-f", "e2e-sync"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
