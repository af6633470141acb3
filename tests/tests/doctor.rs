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

#[test]
fn a_missing_virtiofsd_is_a_warning_that_says_how_to_install_it() {
    let agent = Agent::unix();
    let state = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &std::ffi::OsStr)]| {
        let mut cmd = Command::new(&binaries().hutch);
        cmd.args(["doctor", "--json", "--addr", &agent.addr]).env("HUTCH_STATE_DIR", state.path()).env_remove("HUTCH_QEMU_SHARE");
        cmd.env("PATH", "/usr/bin:/bin").env("CARGO_HOME", empty.path()).env_remove("HUTCH_VIRTIOFSD");
        for (key, value) in env {
            cmd.env(key, value);
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
        check(&report, "workspace share").clone()
    };
    let missing = run(&[]);
    assert_eq!(missing["status"], "warn", "{missing}");
    assert!(missing["detail"].as_str().unwrap().contains("9p"), "{missing}");
    assert!(missing["fix"].as_str().unwrap().contains("cargo install virtiofsd --locked"), "{missing}");

    // A virtiofsd that answers --version is used.
    let fake = empty.path().join("virtiofsd");
    std::fs::write(&fake, "#!/bin/sh\necho 'virtiofsd 1.14.0'\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let found = run(&[("HUTCH_VIRTIOFSD", fake.as_os_str())]);
    assert_ne!(found["status"], "fail", "{found}");
    assert!(found["detail"].as_str().unwrap().contains("virtiofsd 1.14.0"), "{found}");

    let chosen = run(&[("HUTCH_QEMU_SHARE", "9p".as_ref())]);
    assert_eq!((chosen["status"].as_str(), chosen["detail"].as_str()), (Some("ok"), Some("9p, as HUTCH_QEMU_SHARE=9p asks")));
}
