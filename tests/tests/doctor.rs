//! `hutch doctor` against a real agent: guest checks pass, a broken host
//! piece fails with its fix and a non-zero exit.

use std::process::{Command, Stdio};

use hutch_tests::{Agent, binaries, stderr};

fn doctor(agent: &Agent, state: &std::path::Path, qemu: &str) -> (i32, serde_json::Value) {
    let out = Command::new(&binaries().hutch)
        .args(["doctor", "--json", "--addr", &agent.addr])
        .env("HUTCH_STATE_DIR", state)
        .env("HUTCH_QEMU", qemu)
        .env("HUTCH_IMAGE", state.join("no-image"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (out.status.code().unwrap(), report)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report.as_array().unwrap().iter().find(|c| c["check"] == name).unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn guest_checks_pass_and_broken_host_pieces_fail_with_a_fix() {
    let agent = Agent::unix();
    let state = tempfile::tempdir().unwrap();
    let (code, report) = doctor(&agent, state.path(), "/no/such/qemu");
    assert_eq!(check(&report, "agent")["status"], "ok");
    assert_eq!(check(&report, "latency")["status"], "ok");
    assert!(check(&report, "latency")["detail"].as_str().unwrap().contains("median"));
    assert_eq!(check(&report, "disk")["status"].as_str().map(|s| s != "fail"), Some(true));
    assert_eq!(check(&report, "state dir")["status"], "ok");
    let qemu = check(&report, "qemu");
    assert_eq!(qemu["status"], "fail");
    assert!(qemu["fix"].as_str().unwrap().contains("apt-get install qemu-system-x86"));
    assert_eq!(check(&report, "image")["status"], "fail");
    assert_eq!(code, 1, "a failing check must make doctor exit non-zero");
}
