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
    assert!(text.contains("HTTPS_PROXY=http://127.0.0.1:") && text.contains("NODE_EXTRA_CA_CERTS=/etc/hutch/ca-bundle.pem"), "{text}");

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
