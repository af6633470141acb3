//! The guest's network under the host's control, end to end on this
//! machine: `hutch up` (Lima backend, against the fake `limactl` whose
//! "guest" is a real hutch-agent here) starts the VM's real network
//! process; real clients (curl, Python, npm) run as guest programs through
//! `hutch exec`, reach the agent's egress listener on this machine's
//! loopback, and from there hutch's proxy; real servers answer: local
//! HTTP/HTTPS servers with a test CA, and the npm registry this machine's npm
//! is configured for.
//!
//! The guest's loopback is this machine's here, so the test servers listen
//! on 127.0.0.2 and 127.0.0.3 (a guest's `NO_PROXY` covers 127.0.0.1), and
//! the rules allow them by name, as a user allows a private address.

use std::path::Path;

use hutch_tests::fakes::FakeVmm;
use hutch_tests::netvm::{SECRET, audit_lines, guest, ok, vm_with_network};
use hutch_tests::web::WebServer;
use hutch_tests::{code, free_tcp_port, stderr, stdout};

fn up(fake: &FakeVmm) {
    hutch_tests::netvm::up(fake, &[]);
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

#[test]
fn secrets_reach_their_host_only_and_never_the_guest() {
    let api = WebServer::https("127.0.0.2");
    let other = WebServer::http("127.0.0.3");
    let guest_port = free_tcp_port();
    let config = format!(
        "[network]\nguest_port = {guest_port}\nallow = [\"{api}\", \"{other}\"]\n\n[secrets.TEST_API_KEY]\nfrom_env = \"HOST_TEST_KEY\"\nhosts = [\"{api}\"]\n",
        api = api.addr,
        other = other.addr,
    );
    let fake = vm_with_network(&config, api.ca_pem.as_deref());
    up(&fake);

    // The guest sees a placeholder, in its environment and in its files.
    let placeholder = ok(&guest(&fake, "printf %s \"$TEST_API_KEY\""));
    assert!(placeholder.starts_with("hutch-placeholder-TEST_API_KEY-"), "{placeholder:?}");
    let env = ok(&guest(&fake, "env"));
    assert!(!env.contains(SECRET), "the real value is in the guest's environment");
    assert!(env.contains(&format!("HTTPS_PROXY=http://127.0.0.1:{guest_port}")), "{env}");

    // curl: the request arrives at the real server with the real value.
    let script = format!("curl -sS --fail-with-body -H \"Authorization: Bearer $TEST_API_KEY\" {}", api.url("/v1/messages?x=1"));
    let echoed = ok(&guest(&fake, &script));
    assert!(echoed.starts_with("GET /v1/messages?x=1\n"), "{echoed}");
    assert!(echoed.contains(&format!("authorization: Bearer {SECRET}\n")), "{echoed}");

    // Python's urllib, with the proxy and CA bundle from the environment.
    let script = format!(
        "python3 -c \"import os, urllib.request as u; r = u.Request('{}', headers={{'x-api-key': os.environ['TEST_API_KEY']}}); print(u.urlopen(r).read().decode())\"",
        api.url("/py")
    );
    let echoed = ok(&guest(&fake, &script));
    assert!(echoed.contains(&format!("x-api-key: {SECRET}\n")), "{echoed}");

    // The placeholder sent to a host that is not the secret's is refused.
    let script = format!("curl -sS -o /dev/null -w '%{{http_code}}' -H \"X-Key: $TEST_API_KEY\" {}", other.url("/leak"));
    assert_eq!(ok(&guest(&fake, &script)), "403");
    // Without it, the same host answers.
    let echoed = ok(&guest(&fake, &format!("curl -sS {}", other.url("/fine"))));
    assert!(echoed.starts_with("GET /fine\n"), "{echoed}");

    // A host that is not allowed: the error names it and the line to add.
    let out = guest(&fake, "curl -sS -v https://example.com/ 2>&1");
    let text = stdout(&out);
    assert!(text.contains("403") && text.contains("example.com:443: not on the allow list"), "{text}");
    let out = guest(&fake, &format!("curl -sS http://{}/ ", "example.org"));
    let text = stdout(&out);
    assert!(
        text.contains("allow = [\"example.org\"]") && text.contains(&fake.workspace().join("hutch.toml").display().to_string()),
        "{text}"
    );

    // The audit log: one line per decision and per exec, no secret value.
    let log = hutch_tests::audit_log(&fake.state());
    assert!(!log.contains(SECRET), "the real value is in the audit log");
    let lines = audit_lines(&fake);
    let egress: Vec<_> = lines.iter().filter(|l| l["event"] == "egress").collect();
    let execs = lines.iter().filter(|l| l["event"] == "exec").count();
    assert_eq!(execs, 8, "{lines:#?}");
    let injected: Vec<_> = egress.iter().filter(|l| l["secrets"] == serde_json::json!(["TEST_API_KEY"])).collect();
    assert_eq!(injected.len(), 2, "{egress:#?}");
    assert!(injected.iter().all(|l| l["decision"] == "allow" && l["intercepted"] == true && l["status"] == 200));
    let leak = egress.iter().find(|l| l["path"] == "/leak").expect("the refused request is logged");
    assert_eq!(leak["decision"], "deny");
    assert!(leak["reason"].as_str().unwrap().contains("placeholder of secret TEST_API_KEY"), "{leak}");
    let denied: Vec<_> = egress.iter().filter(|l| l["host"] == "example.com" || l["host"] == "example.org").collect();
    assert_eq!(denied.len(), 2, "{egress:#?}");
    assert!(denied.iter().all(|l| l["decision"] == "deny" && l["reason"] == "not on the allow list"));
    // One CONNECT per intercepted request (curl and Python each opened one), plus the plain requests.
    assert_eq!(egress.len(), 2 + 2 + 2 + 2, "{egress:#?}");
    let text = ok(&fake.run(&["audit", "--name", "net"]));
    assert!(text.contains("egress deny  CONNECT example.com:443") && text.contains("exec   exit 0"), "{text}");
    // `hutch log`, the old name, still works for a release: the same output, and a notice on stderr.
    let old_name = fake.run(&["log", "--name", "net"]);
    assert_eq!(ok(&old_name), text);
    assert!(stderr(&old_name).contains("`hutch log` is now `hutch audit`"), "{}", stderr(&old_name));

    // Nothing the agent wrote into the guest holds the real value.
    for file in files_under(&fake.etc()) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(!text.contains(SECRET), "{} holds the real value", file.display());
    }
    // ... and naming the secret in `env` does not pass its value either.
    std::fs::write(fake.workspace().join("hutch.toml"), format!("env = [\"HOST_TEST_KEY\"]\n{config}")).unwrap();
    let script = "printf %s \"${HOST_TEST_KEY:-unset}\"";
    let out = fake.hutch().current_dir(fake.workspace()).args(["exec", "--name", "net", "--", "sh", "-c", script]).output().unwrap();
    assert_eq!(stdout(&out), "unset", "{}", stderr(&out));
    assert!(stderr(&out).contains("not passing HOST_TEST_KEY into the VM"), "{}", stderr(&out));

    ok(&fake.run(&["rm", "-f", "net"]));
}

#[test]
fn private_addresses_and_direct_connections_are_refused() {
    let server = WebServer::http("127.0.0.3");
    let guest_port = free_tcp_port();
    // A range, not a rule naming the address: loopback stays refused.
    let config = format!("[network]\nguest_port = {guest_port}\nallow = [\"127.0.0.0/8:*\"]\n");
    let fake = vm_with_network(&config, None);
    up(&fake);
    // doctor says what stands between the guest and the outside.
    let doctor = stdout(&fake.run(&["doctor", "--name", "net"]));
    assert!(
        doctor.contains(&format!("ok   network: mode allow, 15 allow rules, 0 secrets, guest proxy 127.0.0.1:{guest_port}")),
        "{doctor}"
    );
    let out = guest(&fake, &format!("curl -sS -o /dev/null -w '%{{http_code}}' {}", server.url("/")));
    assert_eq!(stdout(&out), "403", "{}", stderr(&out));
    let lines = audit_lines(&fake);
    let refused = lines.iter().find(|l| l["event"] == "egress").expect("logged");
    assert!(refused["reason"].as_str().unwrap().contains("a loopback address, which only a rule naming it allows"), "{refused}");

    // The policy changes with the configuration: `hutch up` restarts the
    // network process, and a rule naming the address lets it through.
    std::fs::write(fake.workspace().join("hutch.toml"), format!("[network]\nguest_port = {guest_port}\nallow = [\"{}\"]\n", server.addr))
        .unwrap();
    up(&fake);
    let out = guest(&fake, &format!("curl -sS {}", server.url("/now")));
    assert!(stdout(&out).starts_with("GET /now\n"), "{}{}", stdout(&out), stderr(&out));

    // A network process that dies while the VM runs is started again by the
    // next command, with the policy it had.
    let pid_file = fake.state().join("vms/net/net/net.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let pidfd = hutch_tests::pidfd::PidFd::open(pid).expect("the network process runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let net_log = fake.state().join("vms/net/net/net.log");
    assert!(pidfd.wait_exit(std::time::Duration::from_secs(10)), "the network process did not die");
    assert!(!hutch_tests::daemon_running(&net_log));
    let out = guest(&fake, &format!("curl -sS {}", server.url("/again")));
    assert!(stdout(&out).starts_with("GET /again\n"), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("the network process of net was gone; starting it again"), "{}", stderr(&out));

    // `down` stops the network process: the guest's listener is gone.
    assert!(hutch_tests::daemon_running(&fake.state().join("vms/net/net/net.log")));
    ok(&fake.run(&["down", "net"]));
    assert!(!hutch_tests::daemon_running(&fake.state().join("vms/net/net/net.log")));
    assert!(std::net::TcpStream::connect(("127.0.0.1", guest_port)).is_err(), "the egress listener outlived the VM's network");
    ok(&fake.run(&["rm", "-f", "net"]));
}

#[test]
fn npm_installs_through_the_proxy_only_when_the_registry_is_allowed() {
    let registry = std::process::Command::new("npm").args(["config", "get", "registry"]).output().map(|o| stdout(&o).trim().to_owned());
    let Some(registry) = registry.ok().filter(|r| r.starts_with("https://")) else {
        eprintln!("skipped: no npm with an https registry on this machine");
        return;
    };
    let host = registry.trim_start_matches("https://").split(['/', ':']).next().unwrap().to_owned();
    let guest_port = free_tcp_port();
    let fake = vm_with_network(&format!("[network]\nguest_port = {guest_port}\n"), None);
    up(&fake);
    let project = fake.workspace().join("app");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("package.json"), "{\"name\":\"app\",\"version\":\"1.0.0\"}").unwrap();
    let install = format!("cd {} && npm install --no-audit --no-fund is-number@7.0.0 2>&1", project.display());

    let out = guest(&fake, &install);
    assert_ne!(code(&out), 0, "npm reached {host} without being allowed: {}", stdout(&out));
    assert!(stdout(&out).contains("403"), "{}", stdout(&out));
    let refused = audit_lines(&fake).into_iter().find(|l| l["host"] == host.as_str()).expect("the refusal is logged");
    assert_eq!(refused["decision"], "deny");

    std::fs::write(fake.workspace().join("hutch.toml"), format!("[network]\nguest_port = {guest_port}\nallow = [\"{host}\"]\n")).unwrap();
    up(&fake);
    let out = guest(&fake, &install);
    assert_eq!(code(&out), 0, "npm install failed through the proxy:\n{}", stdout(&out));
    assert!(project.join("node_modules/is-number/package.json").exists());
    ok(&fake.run(&["rm", "-f", "net"]));
}

#[test]
fn reset_gives_the_new_vm_the_network_the_old_one_had() {
    let server = WebServer::http("127.0.0.3");
    let guest_port = free_tcp_port();
    let fake = vm_with_network(&format!("[network]\nguest_port = {guest_port}\n"), None);
    let ws = fake.workspace();
    let ws = ws.to_str().unwrap();
    let fetch = format!("curl -sS {}", server.url("/kept"));

    // A rule given as a flag, not in the configuration, outlives a reset.
    ok(&fake.run(&["up", "--name", "net", "--image", "base", "--workspace", ws, "--allow", &server.addr.to_string()]));
    ok(&fake.run(&["reset", "net"]));
    let out = guest(&fake, &fetch);
    assert!(stdout(&out).starts_with("GET /kept\n"), "{}{}", stdout(&out), stderr(&out));

    // A VM without a network gets none back from a reset, whatever the
    // configuration says.
    ok(&fake.run(&["up", "--name", "net", "--workspace", ws, "--network", "none"]));
    assert!(!hutch_tests::daemon_running(&fake.state().join("vms/net/net/net.log")));
    ok(&fake.run(&["reset", "net"]));
    assert!(!hutch_tests::daemon_running(&fake.state().join("vms/net/net/net.log")), "reset gave the VM a network");
    assert!(std::net::TcpStream::connect(("127.0.0.1", guest_port)).is_err(), "the guest has an egress listener");
    ok(&fake.run(&["rm", "-f", "net"]));
}

#[test]
fn run_redacts_the_secrets_of_its_workspace_from_the_audit_log_wherever_it_is_called() {
    let guest_port = free_tcp_port();
    let config = format!(
        "[network]\nguest_port = {guest_port}\n\n[secrets.TEST_API_KEY]\nfrom_env = \"HOST_TEST_KEY\"\nhosts = [\"api.example.com\"]\n"
    );
    let fake = vm_with_network(&config, None);
    let ws = fake.workspace();
    // Called from elsewhere than the workspace, whose hutch.toml names the secret.
    let elsewhere = fake.root.path().join("home");
    let out = fake
        .hutch()
        .current_dir(&elsewhere)
        .args(["run", "--name", "net", "--image", "base", "--workspace", ws.to_str().unwrap(), "--", "echo", SECRET])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("{SECRET}\n"), "{}", stderr(&out));
    let log = hutch_tests::audit_log(&fake.state());
    assert!(!log.contains(SECRET), "the real value is in the audit log: {log}");
    let exec = audit_lines(&fake).into_iter().find(|l| l["event"] == "exec").expect("the exec is logged");
    assert_eq!(exec["argv"], serde_json::json!(["echo", "[secret TEST_API_KEY]"]), "{exec}");
    ok(&fake.run(&["rm", "-f", "net"]));
}
