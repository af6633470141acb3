//! Where the agent listens and how hutch gets there: socket permissions,
//! stale and busy sockets, hybrid vsock, and `hutch ping`.

use std::os::unix::fs::PermissionsExt;

use hutch_tests::hvsock_proxy::HvsockProxy;
use hutch_tests::{Agent, binaries, code, stderr, stdout};

#[test]
fn the_unix_socket_is_private_to_its_owner() {
    let agent = Agent::unix();
    let mode = std::fs::metadata(agent.dir.path().join("agent.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_is_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a dead socket file
    let addr = format!("unix://{}", path.display());
    let agent = Agent::start(dir, addr.clone(), None, &[]);
    assert_eq!(code(&agent.exec(&["true"])), 0);

    let second = std::process::Command::new(&binaries().agent).args(["--listen", &addr]).output().unwrap();
    assert!(!second.status.success());
    assert!(stderr(&second).contains("in use by a running agent"), "{}", stderr(&second));
    assert_eq!(code(&agent.exec(&["true"])), 0, "the first agent must keep its socket");
}

#[test]
fn a_regular_file_in_the_way_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious");
    std::fs::write(&path, "data").unwrap();
    let out = std::process::Command::new(&binaries().agent).args(["--listen", &format!("unix://{}", path.display())]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a socket"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
}

#[test]
fn hybrid_vsock_connects_through_the_connect_handshake() {
    let agent = Agent::unix();
    let proxy = HvsockProxy::start(&agent.dir.path().join("vm.vsock"), 8080, &agent.dir.path().join("agent.sock"));
    let addr = format!("hvsock://{}:8080", proxy.path.display());
    let out = agent.hutch().args(["exec", "--addr", &addr, "--", "echo", "through hvsock"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "through hvsock\n");

    let wrong_port = format!("hvsock://{}:9999", proxy.path.display());
    let out = agent.hutch().args(["exec", "--addr", &wrong_port, "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("would not connect to guest port 9999"), "{}", stderr(&out));
}

#[test]
fn ping_reports_the_agent_and_the_round_trip() {
    let agent = Agent::unix();
    let out = agent.hutch().args(["ping"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("hutch-agent {}", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains(std::env::consts::OS) && text.contains(std::env::consts::ARCH), "{text}");
    assert!(text.contains("round trip"), "{text}");

    let out = agent.hutch().args(["ping", "--json", "--count", "3"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["protocol"], 1);
    assert_eq!(report["rtt_ms"]["count"], 3);
    assert!(report["rtt_ms"]["median"].as_f64().unwrap() > 0.0);
    assert!(report["uptime_ms"].is_u64());
}

#[test]
fn ping_without_an_agent_fails_with_125() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&binaries().hutch)
        .args(["ping", "--addr", &format!("unix://{}/none.sock", dir.path().display())])
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
}
