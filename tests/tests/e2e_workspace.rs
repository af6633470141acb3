//! The shared workspace in real QEMU guests (`cargo xtask e2e` runs these):
//! virtio-fs when virtiofsd is installed, edits crossing both ways with their
//! contents and modes, host edits visible in the guest within the cache
//! timeout, and the fall-back to 9p when virtiofsd is missing.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use hutch_tests::vm::e2e;
use hutch_tests::{code, stderr, stdout};

const SMALL: &[&str] = &["--cpus", "1", "--memory", "256"];

/// How long virtio-fs (`--cache auto`) lets the guest trust a cached name or
/// attribute: a host edit must be visible in the guest within this.
const CACHE_TIMEOUT_MS: u64 = 1000;
/// What a TCG guest on a loaded machine may add to that: one turn of the
/// guest's polling loop (builtins only, no process started).
const POLL_SLACK_MS: u64 = 300;

fn exec(name: &str, script: &str, ws: &Path) -> std::process::Output {
    e2e().run(&["exec", "--name", name, "--", "sh", "-c", script, "sh", ws.to_str().unwrap()])
}

/// The file system type the guest has at `dir`.
fn guest_fstype(name: &str, dir: &Path) -> String {
    let out = exec(name, "awk -v d=\"$1\" '$2 == d { print $3 }' /proc/mounts", dir);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// A host file with `mode` reaches the guest; a guest file with mode 640 and a
/// symlink reach the host, owned by the user running hutch.
fn files_cross_both_ways(name: &str, ws: &Path) {
    let host_file = ws.join("from-host.sh");
    std::fs::write(&host_file, "echo from host\n").unwrap();
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = exec(name, "cd \"$1\" && ./from-host.sh && stat -c %a from-host.sh", ws);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "from host\n755\n"), "{}", stderr(&out));

    let script = "cd \"$1\" && mkdir -p sub && printf 'from guest\\n' > sub/g.txt && chmod 640 sub/g.txt && ln -s sub/g.txt link";
    let out = exec(name, script, ws);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let written = ws.join("sub/g.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "from guest\n");
    let meta = std::fs::metadata(&written).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw(), "the guest's files belong to the user running hutch");
    assert_eq!(std::fs::read_link(ws.join("link")).unwrap(), Path::new("sub/g.txt"));
}

/// The host's git guard holds against root in the guest, whichever file
/// server serves the share: with the agent's gitdir unmounted, the project's
/// `.git` (here the empty placeholder of a folder without a repository) is
/// read-only, and stays so after a remount in the guest. The host's
/// placeholder stays empty, and goes with the VM.
fn the_git_guard_holds_against_root(name: &str, ws: &Path) {
    let script = "cd \"$1\" && git init -q && git rev-parse --git-dir && umount .git && \
                  { mkdir .git/hooks 2>/dev/null || touch .git/config 2>/dev/null; } && echo WRITABLE || echo guarded; \
                  mount -o remount,rw .git 2>/dev/null; touch .git/config 2>/dev/null && echo WRITABLE || echo still guarded";
    let out = exec(name, script, ws);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, ".git\nguarded\nstill guarded\n"), "{}", stderr(&out));
    let dot_git: Vec<_> = std::fs::read_dir(ws.join(".git")).unwrap().collect();
    assert!(dot_git.is_empty(), "the guest wrote into the host's .git: {dot_git:?}");
}

/// No process of VM `name` is left (QEMU, vhost-device-vsock, virtiofsd).
fn nothing_left_of(name: &str) {
    let needle = format!("/vms/{name}/");
    let left: Vec<_> = e2e().vm_processes().into_iter().filter(|(_, c)| c.contains(&needle)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The guest caches a file's contents, a name that does not exist and one that
/// does; the host then rewrites the file (longer), creates the name and deletes
/// the other. The guest polls, with builtins only, until it sees all three,
/// and says how long that took after the host was done.
const COHERENCE: &str = r#"cd "$1" || exit 1
ms() { read -r u _ < /proc/uptime; now=$(( ${u%.*} * 1000 + 1${u#*.} * 10 - 1000 )); }
read -r old < edited.txt; [ -e created.txt ]; [ -e deleted.txt ]; stat edited.txt >/dev/null
echo "ready $old"
read -r go
ms; t0=$now
while :; do
  read -r text < edited.txt
  if [ "$text" = "the second version, longer" ] && [ -e created.txt ] && [ ! -e deleted.txt ]; then break; fi
  ms; [ $((now - t0)) -gt 10000 ] && { echo "still stale after 10 s: $text"; exit 1; }
done
ms; echo $((now - t0))"#;

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn the_workspace_is_virtiofs_both_ways_and_host_edits_show_within_a_second() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let mut args = vec!["up", "--name", "e2e-vfs", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(SMALL);
    let out = e2e().run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("9p"), "virtiofsd is installed (scripts/install-deps), yet: {}", stderr(&out));
    assert_eq!(guest_fstype("e2e-vfs", ws.path()), "virtiofs");
    files_cross_both_ways("e2e-vfs", ws.path());

    std::fs::write(ws.path().join("edited.txt"), "first\n").unwrap();
    std::fs::write(ws.path().join("deleted.txt"), "soon gone\n").unwrap();
    let mut child = e2e()
        .hutch()
        .args(["exec", "--name", "e2e-vfs", "--", "sh", "-c", COHERENCE, "sh", ws.path().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready first", "the guest read the first version");
    std::fs::write(ws.path().join("edited.txt"), "the second version, longer\n").unwrap();
    std::fs::write(ws.path().join("created.txt"), "new\n").unwrap();
    std::fs::remove_file(ws.path().join("deleted.txt")).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let took = lines.next().unwrap().unwrap();
    assert!(child.wait().unwrap().success(), "{took}");
    let took: u64 = took.parse().unwrap_or_else(|_| panic!("{took}"));
    eprintln!("host edits showed in the guest after {took} ms");
    assert!(took <= CACHE_TIMEOUT_MS + POLL_SLACK_MS, "host edits took {took} ms to show in the guest");

    the_git_guard_holds_against_root("e2e-vfs", ws.path());
    let out = e2e().run(&["rm", "-f", "e2e-vfs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    nothing_left_of("e2e-vfs");
    assert!(!ws.path().join(".git").exists(), "the placeholder outlived the VM");
}

/// Where vhost-device-vsock is (PATH or `~/.cargo/bin`), for a run whose PATH
/// and CARGO_HOME hide `~/.cargo/bin`.
fn vhost_device_vsock() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    let path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path.into_iter().chain(home).map(|d| d.join("vhost-device-vsock")).find(|p| p.is_file())
}

#[test]
#[ignore = "needs QEMU and a guest image: run `cargo xtask e2e`"]
fn without_virtiofsd_the_workspace_goes_over_9p_with_a_one_line_notice() {
    let ws = tempfile::tempdir_in("/tmp").unwrap();
    let empty = tempfile::tempdir().unwrap();
    let mut up = e2e().hutch();
    up.args(["up", "--name", "e2e-9p", "--workspace", ws.path().to_str().unwrap()]).args(SMALL);
    up.env("PATH", "/usr/local/bin:/usr/bin:/bin").env("CARGO_HOME", empty.path()).env_remove("HUTCH_VIRTIOFSD");
    up.env_remove("HUTCH_QEMU_SHARE").stdin(Stdio::null());
    if let Some(vsock) = vhost_device_vsock() {
        up.env("HUTCH_VHOST_DEVICE_VSOCK", vsock);
    }
    let out = up.output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let notices: Vec<String> = stderr(&out).lines().filter(|l| l.contains("virtiofsd")).map(str::to_owned).collect();
    assert_eq!(notices.len(), 1, "{}", stderr(&out));
    assert!(notices[0].contains("9p") && notices[0].contains("cargo install virtiofsd --locked"), "{}", notices[0]);
    assert_eq!(guest_fstype("e2e-9p", ws.path()), "9p");
    files_cross_both_ways("e2e-9p", ws.path());
    // QEMU serves 9p itself: it runs in the guard's namespace.
    the_git_guard_holds_against_root("e2e-9p", ws.path());

    let out = e2e().run(&["rm", "-f", "e2e-9p"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    nothing_left_of("e2e-9p");
    assert!(!ws.path().join(".git").exists(), "the placeholder outlived the VM");
}
