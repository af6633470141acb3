//! Local stdin reaches the remote process, and its end is the process's EOF.

use std::io::Write;
use std::process::Stdio;

use hutch_tests::{Agent, PROMPT, code, pseudo_random, stderr};

#[test]
fn piped_stdin_is_forwarded_and_eof_ends_cat() {
    let agent = Agent::unix();
    let mut child = agent.hutch().args(["exec", "--", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout, b"abc");
}

#[test]
fn megabytes_of_stdin_round_trip_exactly() {
    let agent = Agent::unix();
    let data = pseudo_random(8 * 1024 * 1024 + 3, 42);
    let mut child = agent.hutch().args(["exec", "--", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || stdin.write_all(&data))
    };
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(code(&out), 0);
    assert!(out.stdout == data, "got {} bytes back, sent {}", out.stdout.len(), data.len());
}

#[test]
fn no_stdin_gives_the_command_dev_null_even_if_ours_stays_open() {
    let agent = Agent::unix();
    // Our stdin is a pipe we never close: only --no-stdin lets `cat` end.
    let mut child = agent.hutch().args(["exec", "--no-stdin", "--", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let _keep_open = child.stdin.take();
    let pid = hutch_tests::pidfd::PidFd::open(child.id() as i32).unwrap();
    assert!(pid.wait_exit(PROMPT), "cat did not see EOF");
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn dev_null_stdin_is_eof_at_once() {
    let agent = Agent::unix();
    let out = agent.exec(&["sh", "-c", "cat; echo done"]);
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout, b"done\n");
}
