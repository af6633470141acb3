//! Session calls with requests no honest client sends: undecodable
//! messages, huge or hostile names. Every call ends with a status that says
//! why (never a bare OK), names reach statuses escaped and cut short, and a
//! session outlives a client whose requests broke.

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{
    AttachMode, AttachRequest, AttachStart, ExecRequest, ExecResponse, SessionOptions, Start, StartError, StdinMode, attach_request,
    exec_request,
};
use hutch_tests::raw::block_on;
use hutch_tests::wire::bidi;
use hutch_tests::{Agent, code};
use prost::Message;
use tonic::Code;

const ATTACH: &str = "/hutch.v1.Agent/Attach";
const EXEC: &str = "/hutch.v1.Agent/Exec";

fn attach_start(session: &str) -> Vec<u8> {
    let start = AttachStart { session: session.into(), mode: AttachMode::AttachViewer as i32, ..Default::default() };
    AttachRequest { kind: Some(attach_request::Kind::Start(start)) }.encode_to_vec()
}

#[test]
fn a_broken_attach_ends_with_a_status_and_the_session_runs_on() {
    let agent = Agent::unix();
    let socket = agent.socket();
    let started = agent.hutch().args(["exec", "-d", "--tag", "steady", "--", "sleep", "1000"]).output().unwrap();
    assert_eq!(code(&started), 0);

    let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let (_, end) = block_on(bidi::<ExecResponse>(&socket, ATTACH, vec![garbage.clone()]));
    let status = end.expect_err("an undecodable attach ended with status OK");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let (responses, end) = block_on(bidi::<ExecResponse>(&socket, ATTACH, vec![attach_start("steady"), garbage]));
    assert!(matches!(responses.first().and_then(|r| r.kind.as_ref()), Some(Kind::Attached(_))), "{responses:?}");
    let status = end.expect_err("a broken attach ended with status OK");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let ps = agent.hutch().args(["ps", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(list[0]["state"], "running", "a client's broken requests never end the session");
}

#[test]
fn hostile_names_are_refused_or_not_found_in_short_escaped_words() {
    let agent = Agent::unix();
    let socket = agent.socket();
    let huge = "x\n\u{1b}[2J".repeat(100_000);
    let (_, end) = block_on(bidi::<ExecResponse>(&socket, ATTACH, vec![attach_start(&huge)]));
    let status = end.expect_err("an unknown session attached");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().len() < 1024 && !status.message().contains('\u{1b}'), "{:?}", &status.message()[..80]);

    let session = SessionOptions { name: huge, detach: true, buffer_bytes: u64::MAX };
    let start = Start { argv: vec!["true".into()], stdin: StdinMode::StdinNull as i32, session: Some(session), ..Default::default() };
    let request = ExecRequest { kind: Some(exec_request::Kind::Start(start)) }.encode_to_vec();
    let (responses, end) = block_on(bidi::<ExecResponse>(&socket, EXEC, vec![request]));
    assert!(end.is_ok(), "{end:?}");
    let Some(Kind::StartFailed(failed)) = responses.first().and_then(|r| r.kind.clone()) else { panic!("{responses:?}") };
    assert_eq!(failed.error, StartError::InvalidRequest as i32);
    assert!(failed.message.len() < 1024 && !failed.message.contains('\u{1b}'), "{:?}", &failed.message[..80]);
}
