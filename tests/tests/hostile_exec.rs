//! Exec, Forward and Tart calls with requests no honest client sends: undecodable or
//! oversized messages, invalid UTF-8, control characters in names. Every
//! stream ends with `exited`, `start_failed` or an error status that says
//! why, never a bare OK; untrusted strings reach the log and the status
//! escaped and cut short.

use hutch_proto::tart::agent_client::AgentClient as TartClient;
use hutch_proto::tart::{SignalRequest, signal_request};
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecRequest, ExecResponse, ForwardResponse, SignalRequest as Signal, Start, StdinMode, exec_request};
use hutch_tests::Agent;
use hutch_tests::raw::block_on;
use hutch_tests::rss::assert_back_under_limit;
use hutch_tests::wire::{bidi, bytes_field};
use prost::Message;
use tonic::Code;

const EXEC: &str = "/hutch.v1.Agent/Exec";

fn logged_agent() -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}", dir.path().join("agent.sock").display());
    Agent::start_logged(dir, addr, None, &[])
}

/// An ExecRequest whose `start` holds `start_body` (raw Start fields).
fn start_with(start_body: &[u8]) -> Vec<u8> {
    bytes_field(1, start_body)
}

/// One raw Exec call.
fn exec(socket: &std::path::Path, messages: Vec<Vec<u8>>) -> (Vec<ExecResponse>, Result<(), tonic::Status>) {
    block_on(bidi::<ExecResponse>(socket, EXEC, messages))
}

fn encoded(request: ExecRequest) -> Vec<u8> {
    request.encode_to_vec()
}

fn start(argv: &[&str], stdin: StdinMode) -> Vec<u8> {
    let start = Start { argv: argv.iter().map(|s| (*s).to_owned()).collect(), stdin: stdin as i32, ..Start::default() };
    encoded(ExecRequest { kind: Some(exec_request::Kind::Start(start)) })
}

/// Asserts the call ended with an error status of `code` whose message
/// contains `why`, after no `started`.
fn refused(case: &str, (responses, end): (Vec<ExecResponse>, Result<(), tonic::Status>), code: Code, why: &str) {
    let status = end.expect_err(&format!("{case}: the stream ended with status OK after {responses:?}"));
    assert_eq!(status.code(), code, "{case}: {status:?}");
    assert!(status.message().contains(why), "{case}: expected {why:?} in {:?}", status.message());
    assert!(status.message().len() < 1024, "{case}: a {}-byte status message", status.message().len());
}

#[test]
fn undecodable_start_requests_end_with_invalid_argument_and_the_reason() {
    let agent = Agent::unix();
    let socket = agent.socket();
    let bad_argv = start_with(&bytes_field(1, b"ec\xffho"));
    refused("invalid UTF-8 in argv", exec(&socket, vec![bad_argv]), Code::InvalidArgument, "decode");
    let env_entry = [bytes_field(1, b"K\xfe"), bytes_field(2, b"v")].concat();
    let bad_env = start_with(&[bytes_field(1, b"true"), bytes_field(2, &env_entry)].concat());
    refused("invalid UTF-8 in env", exec(&socket, vec![bad_env]), Code::InvalidArgument, "decode");
    let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f];
    refused("undecodable protobuf", exec(&socket, vec![garbage]), Code::InvalidArgument, "decode");
    let huge = start_with(&bytes_field(1, &vec![b'a'; 5 << 20]));
    refused("a 5 MiB start", exec(&socket, vec![huge]), Code::ResourceExhausted, "4194304");
    let forward = block_on(bidi::<ForwardResponse>(&socket, "/hutch.v1.Agent/Forward", vec![vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]]));
    let status = forward.1.expect_err("an undecodable forward ended with status OK");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_back_under_limit(agent.pid(), "undecodable and oversized starts");
}

#[test]
fn an_oversized_stdin_chunk_ends_the_exec_with_a_status_not_silence() {
    let agent = Agent::unix();
    let chunk = encoded(ExecRequest { kind: Some(exec_request::Kind::Stdin(vec![b'x'; 5 << 20].into())) });
    let (responses, end) = exec(&agent.socket(), vec![start(&["cat"], StdinMode::StdinPipe), chunk]);
    let exited = responses.iter().any(|r| matches!(r.kind, Some(Kind::Exited(_))));
    assert!(exited || end.is_err(), "the exec ended with neither `exited` nor an error status: {responses:?}");
    if let Err(status) = end {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("stdin") || status.message().contains("request"), "{status:?}");
    }
    assert_back_under_limit(agent.pid(), "a 5 MiB stdin chunk");
}

#[test]
fn control_characters_in_a_signal_name_cannot_forge_log_lines() {
    let agent = logged_agent();
    let name = "NOPE\n2030-01-01T00:00:00Z  INFO forged line \x1b[31mred\x1b[0m";
    let signal = encoded(ExecRequest { kind: Some(exec_request::Kind::Signal(Signal { name: name.into() })) });
    // `cat` waits on stdin; the signal arrives while it runs, then the
    // half-close ends it.
    let (responses, end) = exec(&agent.socket(), vec![start(&["cat"], StdinMode::StdinPipe), signal]);
    end.expect("a clean exec");
    assert!(responses.iter().any(|r| matches!(r.kind, Some(Kind::Exited(_)))), "{responses:?}");
    let log = String::from_utf8_lossy(&agent.log()).into_owned();
    assert!(log.contains("unknown signal name"), "the agent did not log the bad name: {log}");
    assert!(!log.contains('\x1b'), "a raw ESC reached the log: {log:?}");
    assert!(!log.lines().any(|l| l.starts_with("2030-01-01")), "a forged line reached the log: {log}");
}

#[test]
fn a_huge_tart_exec_id_is_not_echoed_back() {
    let agent = Agent::unix();
    let socket = agent.socket();
    let status = block_on(async {
        let mut client = TartClient::new(hutch_tests::raw::channel(&socket).await);
        let request = SignalRequest { exec_id: "x".repeat(100_000), signal: signal_request::Signal::Sigterm as i32 };
        client.signal(request).await.expect_err("no such exec")
    });
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().len() < 1024, "a {}-byte status message", status.message().len());
}
