//! Process lifecycle: nothing outlives a cancelled exec, background jobs do
//! not hang a finished one, and signals travel to the remote group.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Stdio};
use std::time::Instant;

use hutch_tests::pidfd::{PidFd, proc_state};
use hutch_tests::{Agent, PROMPT, code, stderr};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Starts `hutch exec` with piped stdout and reads its first line.
fn start_and_read_line(agent: &Agent, script: &str) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = agent.hutch().args(["exec", "--", "sh", "-c", script]).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    (child, reader, line)
}

fn pids(line: &str) -> Vec<i32> {
    line.split_whitespace().map(|p| p.parse().unwrap_or_else(|_| panic!("not a pid list: {line:?}"))).collect()
}

#[test]
fn killing_the_client_kills_the_whole_remote_group() {
    let agent = Agent::unix();
    let (mut child, _reader, line) = start_and_read_line(&agent, "sleep 1000 & a=$!; sleep 1000 & echo $$ $a $!; wait");
    let remote: Vec<PidFd> = pids(&line).into_iter().map(|pid| PidFd::open(pid).expect("remote process alive")).collect();
    assert_eq!(remote.len(), 3);

    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();

    for process in &remote {
        assert!(process.wait_exit(PROMPT), "pid {} outlived its cancelled exec", process.pid);
    }
    // The shell is the agent's child: the agent must reap it (no zombie).
    let shell = remote[0].pid;
    let deadline = Instant::now() + PROMPT;
    while proc_state(shell) == Some('Z') && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(proc_state(shell), None, "the agent left its child {shell} unreaped");
}

#[test]
fn a_background_job_holding_stdout_does_not_hang_the_exec() {
    let agent = Agent::unix();
    let begin = Instant::now();
    let out = agent.exec(&["--json", "--", "sh", "-c", "sleep 30 & echo hi"]);
    assert!(begin.elapsed() < PROMPT, "took {:?}", begin.elapsed());
    assert_eq!(code(&out), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stdout"], "hi\n");
    assert_eq!(report["output_cut"], true);

    let plain = agent.exec(&["sh", "-c", "sleep 30 & echo hi"]);
    assert_eq!(plain.stdout, b"hi\n");
}

#[test]
fn sigint_to_hutch_reaches_the_remote_command() {
    let agent = Agent::unix();
    let script = "trap 'echo got-int; exit 3' INT; echo ready; while :; do sleep 1 & wait $!; done";
    let (mut child, mut reader, line) = start_and_read_line(&agent, script);
    assert_eq!(line, "ready\n");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-int\n");
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn sigterm_to_hutch_terminates_the_remote_command() {
    let agent = Agent::unix();
    let (mut child, _reader, line) = start_and_read_line(&agent, "echo $$; exec sleep 1000");
    let remote = PidFd::open(pids(&line)[0]).unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(remote.wait_exit(PROMPT));
    assert_eq!(child.wait().unwrap().code(), Some(143));
}

#[test]
fn a_closed_stdout_stops_the_remote_writer_like_sigpipe() {
    let agent = Agent::unix();
    let (mut child, reader, line) = start_and_read_line(&agent, "echo $$; exec yes");
    let remote = PidFd::open(pids(&line)[0]).unwrap();
    drop(reader);
    assert!(remote.wait_exit(PROMPT), "the remote `yes` kept running after our stdout closed");
    assert_eq!(child.wait().unwrap().code(), Some(141));
}

#[test]
fn stopping_the_agent_kills_what_it_runs() {
    let agent = Agent::unix();
    let (child, _reader, line) = start_and_read_line(&agent, "echo $$; exec sleep 1000");
    let remote = PidFd::open(pids(&line)[0]).unwrap();
    let status = agent.stop();
    assert!(status.success(), "agent exit: {status:?}");
    assert!(remote.wait_exit(PROMPT), "the exec outlived the agent");
    // The agent reports the truth: its shutdown killed the command.
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
}
