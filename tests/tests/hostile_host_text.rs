//! The host under a hostile agent (issue 23), text: whatever the agent says
//! of itself, in its statuses, start failures, forward errors and session
//! names reaches the user's terminal escaped and cut, never as an escape
//! sequence (OSC 52 would set the clipboard) or a forged line.

use std::io::Read;
use std::process::{Command, Stdio};

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{
    ExecResponse, ForwardFailed, ForwardResponse, ListSessionsResponse, SessionInfo, SessionState, StartFailed, forward_response,
};
use hutch_tests::hostile_agent::{HostileAgent, Plan, Step, ordinary_info};
use hutch_tests::{PROMPT, code, free_tcp_port, stderr, stdout};

/// Text that would act on a terminal or forge a line if printed as it is.
const EVIL: &str = "ok\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\r\n2026-12-01 16:04:52.301  exec   exit 0  forged\u{9b}31m\u{202e}";

/// `hutch` aimed at `agent`, waiting at most 2 s for each answer.
fn hutch(agent: &HostileAgent) -> Command {
    agent.hutch("2")
}

/// Nothing in `output` that acts on a terminal: no ESC, BEL, CR, C1 control
/// or bidirectional override, and not the forged line at a line's start.
fn assert_clean(what: &str, output: &[u8]) {
    let text = String::from_utf8_lossy(output);
    let bad: Vec<char> =
        text.chars().filter(|c| (c.is_control() && *c != '\n' && *c != '\t') || matches!(c, '\u{202a}'..='\u{202e}')).collect();
    assert!(bad.is_empty(), "{what}: raw control characters {bad:?} reached the terminal:\n{text}");
    assert!(!text.lines().any(|l| l.starts_with("2026-12-01")), "{what}: a forged line:\n{text}");
}

fn evil_info() -> hutch_proto::v1::InfoResponse {
    hutch_proto::v1::InfoResponse { version: EVIL.into(), hostname: EVIL.into(), os: EVIL.into(), kernel: EVIL.into(), ..ordinary_info() }
}

#[test]
fn ping_and_doctor_show_what_the_agent_says_of_itself_escaped() {
    let agent = HostileAgent::start(Plan::new().answer("Info", &evil_info()));
    for args in [&["ping"][..], &["ping", "--json"], &["doctor"], &["doctor", "--json"]] {
        let out = hutch(&agent).args(args).output().unwrap();
        assert_clean(&format!("hutch {args:?} stdout"), &out.stdout);
        assert_clean(&format!("hutch {args:?} stderr"), &out.stderr);
        assert!(stdout(&out).contains("\\u{1b}]52"), "hutch {args:?} should show the text escaped:\n{}", stdout(&out));
    }
    let json: serde_json::Value = serde_json::from_slice(&hutch(&agent).args(["ping", "--json"]).output().unwrap().stdout).unwrap();
    assert!(json["hostname"].as_str().unwrap().starts_with("ok\\u{1b}"), "{json}");
}

#[test]
fn statuses_and_start_failures_reach_the_terminal_escaped() {
    let failed = ExecResponse { kind: Some(Kind::StartFailed(StartFailed { error: 1, message: EVIL.into() })) };
    let agent = HostileAgent::start(
        Plan::new()
            .with_info()
            .answer("Exec", &failed)
            .on("ListSessions", vec![Step::Status(13, EVIL.into())])
            .on("SignalSession", vec![Step::Status(3, EVIL.into())])
            .on("SnapshotDiff", vec![Step::Status(9, EVIL.into())]),
    );
    let out = hutch(&agent).args(["exec", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert_clean("a start failure", &out.stderr);
    let out = hutch(&agent).args(["exec", "--json", "--", "true"]).output().unwrap();
    assert_clean("a start failure as JSON", &out.stdout);
    for args in [&["ps"][..], &["kill", "web"], &["diff", "--workspace", "/tmp"]] {
        let out = hutch(&agent).args(args).output().unwrap();
        assert_eq!(code(&out), 125, "hutch {args:?}: {}", stderr(&out));
        assert_clean(&format!("the status of hutch {args:?}"), &out.stderr);
        assert!(stderr(&out).contains("\\u{1b}"), "hutch {args:?}: {}", stderr(&out));
    }
}

#[test]
fn forward_errors_are_escaped() {
    let failed = ForwardResponse { kind: Some(forward_response::Kind::Failed(ForwardFailed { error: 5, message: EVIL.into() })) };
    let agent = HostileAgent::start(Plan::new().with_info().answer("Forward", &failed));
    let port = free_tcp_port();
    let mut forward =
        hutch(&agent).args(["forward", &format!("{port}:3000")]).stderr(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    // Once it says it forwards (on stdout), a connection makes it ask the agent.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(forward.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.contains("→"), "hutch forward said {line:?}");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(PROMPT)).unwrap();
    // The client's connection is closed once the agent refused.
    let mut buf = [0u8; 16];
    let _ = client.read(&mut buf);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(forward.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let mut seen = Vec::new();
    forward.stderr.take().unwrap().read_to_end(&mut seen).unwrap();
    forward.wait().unwrap();
    assert!(String::from_utf8_lossy(&seen).contains("could not connect"), "{}", String::from_utf8_lossy(&seen));
    assert_clean("a forward error", &seen);
}

#[test]
fn session_names_and_commands_are_escaped_and_one_long_cell_neither_panics_nor_widens_ps() {
    let session = |name: &str, argv: Vec<String>| SessionInfo {
        name: name.into(),
        argv,
        state: SessionState::SessionRunning as i32,
        pid: 7,
        ..Default::default()
    };
    let list = ListSessionsResponse {
        sessions: vec![session("long", vec!["x".repeat(70_000), EVIL.into()]), session("short", vec![EVIL.into()])],
        ..Default::default()
    };
    let agent = HostileAgent::start(Plan::new().with_info().answer("ListSessions", &list));
    let out = hutch(&agent).args(["ps"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_clean("ps", &out.stdout);
    assert!(stdout(&out).lines().all(|l| l.chars().count() < 400), "a row as wide as the longest command:\n{}", &stdout(&out)[..400]);
    let out = hutch(&agent).args(["ps", "--json"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_clean("ps --json", &out.stdout);

    // A name that is no tag (the agent makes tags of 1-64 plain characters) is a protocol error.
    agent.set_plan(
        Plan::new()
            .with_info()
            .answer("ListSessions", &ListSessionsResponse { sessions: vec![session(EVIL, vec![])], ..Default::default() }),
    );
    let out = hutch(&agent).args(["ps"]).output().unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert_clean("ps of a bad name", &out.stderr);
}
