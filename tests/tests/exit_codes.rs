//! `hutch exec` exits with the command's own code, or with the README's exit-code
//! table's codes when the command did not run to completion.

use std::time::{Duration, Instant};

use hutch_tests::{Agent, PROMPT, code, stderr, stdout};

#[test]
fn success_and_plain_exit_codes_pass_through() {
    let agent = Agent::unix();
    assert_eq!(code(&agent.exec(&["true"])), 0);
    assert_eq!(code(&agent.exec(&["sh", "-c", "exit 7"])), 7);
    assert_eq!(code(&agent.exec(&["sh", "-c", "exit 255"])), 255);
}

#[test]
fn death_by_signal_is_128_plus_n() {
    let agent = Agent::unix();
    assert_eq!(code(&agent.exec(&["sh", "-c", "kill -TERM $$"])), 143);
    assert_eq!(code(&agent.exec(&["sh", "-c", "kill -KILL $$"])), 137);
}

#[test]
fn missing_command_is_127_at_once() {
    let agent = Agent::unix();
    let begin = Instant::now();
    let out = agent.exec(&["hutch-no-such-command"]);
    assert!(begin.elapsed() < Duration::from_secs(1), "took {:?}", begin.elapsed());
    assert_eq!(code(&out), 127);
    assert!(stderr(&out).contains("hutch-no-such-command: command not found"), "{}", stderr(&out));
    assert_eq!(code(&agent.exec(&["/no/such/path"])), 127);
}

#[test]
fn non_executable_is_126() {
    let agent = Agent::unix();
    let script = hutch_tests::write_file(agent.dir.path(), "not-exec.sh", b"#!/bin/sh\necho hi\n");
    let out = agent.exec(&[script.to_str().unwrap()]);
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot execute"), "{}", stderr(&out));
    // A directory is not executable either.
    assert_eq!(code(&agent.exec(&["/"])), 126);
}

#[test]
fn missing_interpreter_is_126_not_127() {
    let agent = Agent::unix();
    let script = hutch_tests::write_file(agent.dir.path(), "bad-interp.sh", b"#!/no/such/interpreter\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = agent.exec(&[script.to_str().unwrap()]);
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    assert!(stderr(&out).contains("bad interpreter"), "{}", stderr(&out));
}

#[test]
fn timeout_kills_the_group_and_is_124() {
    let agent = Agent::unix();
    let begin = Instant::now();
    // The background sleep is in the same group and must die too, or the
    // pipe it holds would keep the exec open.
    let out = agent.exec(&["--timeout", "300ms", "--", "sh", "-c", "sleep 60 & sleep 60"]);
    assert_eq!(code(&out), 124, "{}", stderr(&out));
    assert!(begin.elapsed() < PROMPT, "took {:?}", begin.elapsed());
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
}

#[test]
fn timeout_escalates_to_sigkill_when_term_is_ignored() {
    let agent = Agent::unix();
    let out = agent.exec(&["--timeout", "200ms", "--json", "--", "sh", "-c", "trap '' TERM; echo armed; while :; do sleep 1; done"]);
    assert_eq!(code(&out), 124);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["timed_out"], true);
    assert_eq!(report["signal"], "SIGKILL");
    assert_eq!(report["stdout"], "armed\n");
}

#[test]
fn bad_cwd_is_125_with_the_reason() {
    let agent = Agent::unix();
    let out = agent.exec(&["--cwd", "/no/such/dir", "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("working directory /no/such/dir"), "{}", stderr(&out));
}

#[test]
fn cwd_and_env_reach_the_command() {
    let agent = Agent::unix();
    let dir = agent.dir.path().to_str().unwrap().to_owned();
    let out = agent.exec(&["--cwd", &dir, "-e", "GREETING=hi there", "--", "sh", "-c", "pwd; echo \"$GREETING\""]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{dir}\nhi there\n"));
}

#[test]
fn unreachable_agent_is_125_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}/nobody.sock", dir.path().display());
    let out = std::process::Command::new(&hutch_tests::binaries().hutch)
        .args(["exec", "--addr", &addr, "--", "true"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    let err = stderr(&out);
    assert!(err.contains("no agent socket at"), "{err}");
    assert!(err.contains("hint: "), "{err}");
    assert_eq!(err.lines().count(), 2, "one line of reason, one of hint: {err}");
}

#[test]
fn missing_address_and_bad_flags_are_125_not_2() {
    let hutch = &hutch_tests::binaries().hutch;
    // No address and no VM for this directory: say so, and how to fix it.
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(hutch)
        .args(["exec", "--", "true"])
        .env_remove("HUTCH_ADDR")
        .env("HUTCH_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("no VM named"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint: ") && stderr(&out).contains("--addr"), "{}", stderr(&out));
    let out = std::process::Command::new(hutch).args(["exec", "--no-such-flag", "true"]).output().unwrap();
    assert_eq!(code(&out), 125);
    let out = std::process::Command::new(hutch).args(["exec", "--addr", "http://x", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("unsupported address"), "{}", stderr(&out));
}

#[test]
fn json_report_has_the_outcome_and_the_output() {
    let agent = Agent::unix();
    let out = agent.exec(&["--json", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(code(&out), 3);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["signal"], serde_json::Value::Null);
    assert_eq!(report["timed_out"], false);
    assert!(report["duration_ms"].is_u64());
    assert_eq!(report["stdout"], "out\n");
    assert_eq!(report["stderr"], "err\n");

    let out = agent.exec(&["--json", "--", "sh", "-c", "kill -TERM $$"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exit_code"], 143);
    assert_eq!(report["signal"], "SIGTERM");

    let out = agent.exec(&["--json", "--", "hutch-no-such-command"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exit_code"], 127);
    assert_eq!(report["error"]["kind"], "NOT_FOUND");
}
