//! The host under a hostile agent (issue 23), time: an agent that accepts
//! the connection and never answers (not even HTTP/2's preface), or answers
//! a call's headers and then nothing, holds no command past its deadline,
//! and the error names the agent (the VM, by name). A command's own run
//! time is never cut, and Ctrl-C always ends the client.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecResponse, Exited, Started, WaitSessionResponse, exited};
use hutch_tests::hostile_agent::{HostileAgent, Plan, Step, msg, vm_record};
use hutch_tests::pty::OnPty;
use hutch_tests::{PROMPT, code, stderr, stdout};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The call deadline the tests set (HUTCH_CALL_TIMEOUT), short.
const DEADLINE: Duration = Duration::from_secs(1);

/// `hutch` aimed at `agent`, waiting at most 1 s for each answer.
fn hutch(agent: &HostileAgent) -> Command {
    agent.hutch("1")
}

/// Every command that asks the agent something and expects an answer
/// (`ws`: an empty workspace for `sync` and `diff`).
fn asking(ws: &std::path::Path) -> Vec<Vec<String>> {
    let ws = ws.to_str().expect("utf-8");
    let commands: [&[&str]; 9] = [
        &["ping"],
        &["ps"],
        &["kill", "s"],
        &["exec", "--", "true"],
        &["exec", "-d", "--", "true"],
        &["attach", "s"],
        &["logs", "s"],
        &["sync", "--workspace", ws],
        &["diff", "--workspace", ws],
    ];
    commands.iter().map(|c| c.iter().map(|a| (*a).to_owned()).collect()).collect()
}

/// Runs `args` and checks it ended with 125 within the deadline (and a
/// margin for starting processes on a loaded machine), saying who did not
/// answer. A hutch still waiting past that is killed and the test fails.
fn gives_up(cmd: &mut Command, args: &[String], who: &str) {
    let out = output_within(cmd.args(args), DEADLINE + PROMPT);
    assert_eq!(code(&out), 125, "hutch {args:?}: {}", stderr(&out));
    assert!(stderr(&out).contains(who) && stderr(&out).contains("did not answer"), "hutch {args:?}: {}", stderr(&out));
}

/// `cmd`'s output, once it ended; fails the test (killing it) when it runs
/// longer than `limit`.
fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let begin = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if begin.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} still waited after {limit:?} on an agent that does not answer: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_agent_that_never_speaks_holds_no_command_past_its_deadline() {
    let mute = HostileAgent::mute();
    let ws = tempfile::tempdir().unwrap();
    for args in asking(ws.path()) {
        gives_up(&mut hutch(&mute), &args, "the agent at unix://");
    }
    let out = output_within(hutch(&mute).arg("doctor"), DEADLINE + PROMPT);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("did not answer Info"), "{}", stdout(&out));
}

#[test]
fn an_agent_that_takes_a_call_and_says_nothing_holds_no_command_past_its_deadline() {
    let methods = ["Info", "ListSessions", "SignalSession", "Exec", "Attach", "Sync", "SnapshotDiff", "Forward", "WaitSession", "Prepare"];
    let silent = methods.iter().fold(Plan::new(), |plan, m| plan.on(m, vec![Step::Silent]));
    let agent = HostileAgent::start(silent);
    let ws = tempfile::tempdir().unwrap();
    for args in asking(ws.path()) {
        gives_up(&mut hutch(&agent), &args, "the agent at unix://");
    }
    // Headers, then nothing: the same.
    let hanging = methods.iter().fold(Plan::new(), |plan, m| plan.on(m, vec![Step::Hang]));
    agent.set_plan(hanging);
    for args in asking(ws.path()) {
        gives_up(&mut hutch(&agent), &args, "the agent at unix://");
    }
    a_commands_own_time_is_never_cut();
}

#[test]
fn a_silent_vm_agent_is_named_by_its_vm_through_the_multiplexer_too() {
    let agent = HostileAgent::start(Plan::new().on("ListSessions", vec![Step::Hang]).on("Info", vec![Step::Hang]));
    let state = tempfile::tempdir().unwrap();
    vm_record(state.path(), "web", &agent.addr, None);
    for _ in 0..2 {
        // The first connects directly and starts the multiplexer; the second goes through it.
        let mut cmd = hutch(&agent);
        cmd.env_remove("HUTCH_ADDR").env("HUTCH_STATE_DIR", state.path());
        gives_up(&mut cmd, &["ps".into(), "--name".into(), "web".into()], "VM web's agent");
        let mut cmd = hutch(&agent);
        cmd.env_remove("HUTCH_ADDR").env("HUTCH_STATE_DIR", state.path());
        gives_up(&mut cmd, &["ping".into(), "--name".into(), "web".into()], "VM web's agent");
    }
    assert!(state.path().join("vms/web/mux.sock").exists(), "no multiplexer was started");
    let _ = hutch(&agent).env_remove("HUTCH_ADDR").env("HUTCH_STATE_DIR", state.path()).args(["down", "web"]).output();
}

#[test]
fn ctrl_c_ends_the_client_while_it_waits_for_a_start_and_while_a_command_runs() {
    // The agent would take a minute to answer (the deadline here is long).
    let agent = HostileAgent::start(Plan::new().with_info().on("Exec", vec![Step::Silent]));
    let mut child = hutch(&agent).env("HUTCH_CALL_TIMEOUT", "60").args(["exec", "--", "true"]).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_call(&agent, "Exec");
    let begin = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(begin.elapsed() < PROMPT, "Ctrl-C took {:?}", begin.elapsed());
    assert_eq!(status.code(), Some(130), "{status:?}");

    // On a terminal too (-t): the terminal is not raw until the command started.
    let mut cmd = hutch(&agent);
    cmd.env("HUTCH_CALL_TIMEOUT", "60").args(["exec", "-t", "--", "sh"]);
    let calls = agent.calls().len();
    let mut pty = OnPty::spawn(cmd, 24, 80);
    wait_for_calls(&agent, calls + 1);
    pty.type_bytes(b"\x03");
    let status = wait_with_deadline(&mut pty.child);
    assert_eq!(status.code(), Some(130), "{status:?}");

    // Started, then silence: the third Ctrl-C gives up on the remote side.
    let started = msg(&ExecResponse { kind: Some(Kind::Started(Started { pid: 1, session: String::new() })) });
    let ready = msg(&ExecResponse { kind: Some(Kind::Stdout(b"ready\n".to_vec().into())) });
    agent.set_plan(Plan::new().with_info().on("Exec", vec![started, ready, Step::Hang]));
    let mut child = hutch(&agent).args(["exec", "--", "true"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Once its output is out, the command runs as far as hutch knows.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // Each Ctrl-C is passed on as a request; the next is sent once the agent has it.
    let mut requests = agent.requests();
    for sent in 1..=3 {
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        if sent < 3 {
            requests = wait_for_requests(&agent, requests + 1, &mut child);
            assert!(child.try_wait().unwrap().is_none(), "hutch left after {sent} Ctrl-C");
        }
    }
    let status = wait_with_deadline(&mut child);
    assert_eq!(status.code(), Some(130), "{status:?}");
}

/// Waits until the agent has had `n` calls.
fn wait_for_calls(agent: &HostileAgent, n: usize) {
    let begin = Instant::now();
    while agent.calls().len() < n {
        assert!(begin.elapsed() < PROMPT, "hutch never made call {n}");
        std::thread::yield_now();
    }
}

/// Waits until the agent has received `n` request messages, or `child` ended.
fn wait_for_requests(agent: &HostileAgent, n: usize, child: &mut std::process::Child) -> usize {
    let begin = Instant::now();
    loop {
        let got = agent.requests();
        if got >= n || child.try_wait().unwrap().is_some() {
            return got;
        }
        assert!(begin.elapsed() < PROMPT, "the agent never got request {n}");
        std::thread::yield_now();
    }
}

/// Waits until `method` has been called (hutch is waiting for its answer).
fn wait_for_call(agent: &HostileAgent, method: &str) {
    let begin = Instant::now();
    while !agent.calls().iter().any(|c| c == method) {
        assert!(begin.elapsed() < PROMPT, "hutch never called {method}");
        std::thread::yield_now();
    }
}

fn wait_with_deadline(child: &mut std::process::Child) -> std::process::ExitStatus {
    let begin = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(begin.elapsed() < PROMPT, "hutch did not end on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A slow agent (not a silent one) is waited for: a command's own run and a
/// wait for a session's end are never cut.
fn a_commands_own_time_is_never_cut() {
    let started = msg(&ExecResponse { kind: Some(Kind::Started(Started { pid: 1, session: String::new() })) });
    let output = msg(&ExecResponse { kind: Some(Kind::Stdout(b"late\n".to_vec().into())) });
    let exited = msg(&ExecResponse { kind: Some(Kind::Exited(Exited { status: Some(exited::Status::Code(3)), ..Default::default() })) });
    let slow = DEADLINE * 3;
    let session = hutch_proto::v1::SessionInfo {
        name: "s".into(),
        state: hutch_proto::v1::SessionState::SessionExited as i32,
        exited: Some(Exited { status: Some(exited::Status::Code(4)), ..Default::default() }),
        ..Default::default()
    };
    let agent = HostileAgent::start(
        Plan::new()
            .with_info()
            .on("Exec", vec![started, Step::Pause(slow), output, Step::Pause(slow), exited])
            .on("WaitSession", vec![Step::Pause(slow), msg(&WaitSessionResponse { session: Some(session) })]),
    );
    let out = hutch(&agent).args(["exec", "--", "slow"]).output().unwrap();
    assert_eq!((code(&out), stdout(&out).as_str()), (3, "late\n"), "{}", stderr(&out));
    let out = hutch(&agent).args(["wait", "s"]).output().unwrap();
    assert_eq!(code(&out), 4, "waiting for a session's end is never cut: {}", stderr(&out));
}
