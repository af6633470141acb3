//! The host under a hostile agent (issue 23), protocol values: an exit
//! code outside 0..=255, a signal that is none, `detached` or `dropped` on
//! a plain exec, unknown enum values. Each is hutch's own failure (exit
//! 125, "hutch itself failed"), never a code the command could have had:
//! an `Exited.code` of 256 was exit 0.

use std::process::Command;

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{
    Attached, DetachReason, Detached, ExecResponse, Exited, ListSessionsResponse, OutputDropped, SessionInfo, SessionState, Started,
    WaitSessionResponse, exited,
};
use hutch_tests::hostile_agent::{HostileAgent, Plan, Step, msg};
use hutch_tests::{code, stderr, stdout};

/// `hutch` aimed at `agent`, waiting at most 5 s for each answer.
fn hutch(agent: &HostileAgent) -> Command {
    agent.hutch("5")
}

fn started() -> Step {
    msg(&ExecResponse { kind: Some(Kind::Started(Started { pid: 42, session: String::new() })) })
}

fn ended(status: exited::Status, name: &str) -> Exited {
    Exited { status: Some(status), signal_name: name.into(), ..Default::default() }
}

fn exit_step(exited: Exited) -> Step {
    msg(&ExecResponse { kind: Some(Kind::Exited(exited)) })
}

#[test]
fn an_exec_whose_end_is_outside_the_protocol_fails_with_125_never_0() {
    let cases = [
        ("exit code 256", exit_step(ended(exited::Status::Code(256), ""))),
        ("exit code -1", exit_step(ended(exited::Status::Code(-1), ""))),
        ("exit code 512 + 3", exit_step(ended(exited::Status::Code(515), ""))),
        ("signal 0", exit_step(ended(exited::Status::Signal(0), ""))),
        ("signal 256", exit_step(ended(exited::Status::Signal(256), ""))),
        ("a signal name that is none", exit_step(ended(exited::Status::Signal(9), "KILL\n"))),
        ("neither code nor signal", exit_step(Exited::default())),
        (
            "detached, to a plain exec",
            msg(&ExecResponse {
                kind: Some(Kind::Detached(Detached { reason: DetachReason::DetachRequested as i32, session: "x".into() })),
            }),
        ),
        ("dropped, to a plain exec", msg(&ExecResponse { kind: Some(Kind::Dropped(OutputDropped { stdout_bytes: 1, stderr_bytes: 0 })) })),
        ("attached, to a plain exec", msg(&ExecResponse { kind: Some(Kind::Attached(Attached::default())) })),
    ];
    for (case, step) in cases {
        let agent = HostileAgent::start(Plan::new().with_info().on("Exec", vec![started(), step]));
        let out = hutch(&agent).args(["exec", "--", "true"]).output().unwrap();
        assert_eq!(code(&out), 125, "{case}: {}", stderr(&out));
        assert!(stderr(&out).contains("protocol error"), "{case}: {}", stderr(&out));
        let out = hutch(&agent).args(["exec", "--json", "--", "true"]).output().unwrap();
        assert_eq!(code(&out), 125, "{case} (--json): {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["exit_code"], 125, "{case}: {report}");
    }
    // A well-formed end still means what it says.
    let agent = HostileAgent::start(Plan::new().with_info().on("Exec", vec![started(), exit_step(ended(exited::Status::Code(7), ""))]));
    assert_eq!(code(&hutch(&agent).args(["exec", "--", "true"]).output().unwrap()), 7);
}

#[test]
fn a_plain_exec_is_never_detached_and_a_first_answer_must_start_it() {
    let detached =
        msg(&ExecResponse { kind: Some(Kind::Detached(Detached { reason: DetachReason::DetachAtStart as i32, session: "s".into() })) });
    let agent = HostileAgent::start(Plan::new().with_info().on("Exec", vec![detached.clone()]));
    let out = hutch(&agent).args(["exec", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125, "a plain exec answered `detached` first: {}", stderr(&out));
    // `--detach` with a reason other than the one it asked for is no start either.
    let other =
        msg(&ExecResponse { kind: Some(Kind::Detached(Detached { reason: DetachReason::DetachTakenOver as i32, session: "s".into() })) });
    let agent = HostileAgent::start(
        Plan::new()
            .with_info()
            .on("Exec", vec![msg(&ExecResponse { kind: Some(Kind::Started(Started { pid: 1, session: "s".into() })) }), other]),
    );
    let out = hutch(&agent).args(["exec", "-d", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "no tag is printed for a session that did not start as asked");
}

#[test]
fn wait_and_ps_check_a_sessions_end_and_state() {
    let session = |state: i32, exited: Option<Exited>| SessionInfo { name: "build".into(), state, exited, pid: 3, ..Default::default() };
    for (case, info) in [
        ("exit code 256", session(SessionState::SessionExited as i32, Some(ended(exited::Status::Code(256), "")))),
        ("state 99", session(99, None)),
        ("exited without how", session(SessionState::SessionExited as i32, None)),
    ] {
        let agent = HostileAgent::start(
            Plan::new()
                .with_info()
                .answer("WaitSession", &WaitSessionResponse { session: Some(info.clone()) })
                .answer("ListSessions", &ListSessionsResponse { sessions: vec![info], ..Default::default() }),
        );
        let out = hutch(&agent).args(["wait", "build"]).output().unwrap();
        assert_eq!(code(&out), 125, "wait, {case}: {}", stderr(&out));
        let out = hutch(&agent).args(["ps"]).output().unwrap();
        assert_eq!(code(&out), 125, "ps, {case}: {}", stderr(&out));
    }
}

#[test]
fn an_attach_answered_with_an_unknown_mode_or_a_seat_not_asked_for_fails_with_125() {
    let attached =
        |mode: i32| msg(&ExecResponse { kind: Some(Kind::Attached(Attached { session: "s".into(), mode, ..Default::default() })) });
    for (case, first) in [("mode 99", attached(99)), ("a writer's seat to a viewer", attached(1))] {
        let agent = HostileAgent::start(Plan::new().with_info().on("Attach", vec![first, exit_step(ended(exited::Status::Code(0), ""))]));
        let out = hutch(&agent).args(["attach", "--read-only", "s"]).output().unwrap();
        assert_eq!(code(&out), 125, "{case}: {}", stderr(&out));
    }
}
