//! The host under a hostile agent (issue 23), logs: what the guest sends
//! into the audit log is stored as escaped JSON and shown escaped, so
//! `hutch audit` never shows a line the guest forged; and the audit records
//! of a VM outlive it (`run --rm` above all), behind the fake Lima.

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecResponse, Exited, PrepareResponse, StartFailed, Started, exited};
use hutch_tests::fakes::FakeVmm;
use hutch_tests::hostile_agent::{HostileAgent, Plan, msg};
use hutch_tests::{code, stderr, stdout};

/// A start failure whose message would show as an "exec exit 0" line of its own.
const FORGED: &str = "no\n2026-12-01 16:04:52.301  exec   exit 0  npm install  (in /home/me/app) 4210 ms\r\x1b[2K";

fn ok(out: &std::process::Output) {
    assert_eq!(code(out), 0, "{}{}", stdout(out), stderr(out));
}

fn prepared(ws: &std::path::Path) -> PrepareResponse {
    PrepareResponse { workspace: ws.to_str().unwrap().into(), ..Default::default() }
}

#[test]
fn a_guest_cannot_forge_a_line_of_the_audit_log() {
    let agent = HostileAgent::start(Plan::new());
    let fake = FakeVmm::lima_in_front_of(&agent.socket);
    let ws = fake.workspace();
    let failed = ExecResponse { kind: Some(Kind::StartFailed(StartFailed { error: 1, message: FORGED.into() })) };
    agent.set_plan(Plan::new().with_info().answer("Prepare", &prepared(&ws)).answer("Exec", &failed));
    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--workspace", ws.to_str().unwrap()]));
    let out = fake.run(&["exec", "--name", "web", "--", "npm", "install"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));

    let log = fake.run(&["log", "web"]);
    ok(&log);
    let text = stdout(&log);
    assert_eq!(text.lines().count(), 1, "one exec, one line:\n{text}");
    assert!(!text.lines().any(|l| l.starts_with("2026-12-01")), "a forged line:\n{text}");
    assert!(text.contains("error: no\\n2026-12-01"), "the guest's text, escaped, in the one real line:\n{text}");
    assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
    // The stored line keeps the guest's text whole, as a JSON string.
    let json = fake.run(&["log", "web", "--json"]);
    let event: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(event["vm"], "web");
    assert!(event["error"].as_str().unwrap().contains("exec   exit 0"), "{event}");
    ok(&fake.run(&["rm", "-f", "web"]));
}

#[test]
fn the_record_of_a_throw_away_run_outlives_its_vm() {
    let agent = HostileAgent::start(Plan::new());
    let fake = FakeVmm::lima_in_front_of(&agent.socket);
    let ws = fake.workspace();
    let exec = vec![
        msg(&ExecResponse { kind: Some(Kind::Started(Started { pid: 4, session: String::new() })) }),
        msg(&ExecResponse { kind: Some(Kind::Exited(Exited { status: Some(exited::Status::Code(3)), ..Default::default() })) }),
    ];
    agent.set_plan(Plan::new().with_info().answer("Prepare", &prepared(&ws)).on("Exec", exec));
    let run = fake.hutch().args(["run", "--rm", "--image", "base", "--", "make", "test"]).current_dir(&ws).output().unwrap();
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    assert!(!fake.state().join("vms").read_dir().unwrap().any(|_| true), "the VM is gone");

    // In the project, `hutch audit` shows the run, naming its (removed) VM.
    let log = fake.hutch().arg("log").current_dir(&ws).output().unwrap();
    ok(&log);
    let text = stdout(&log);
    assert!(text.contains("exec   exit 3  make test"), "{text}");
    assert!(text.contains("[run-"), "the line names the VM it ran in: {text}");
    // And by the VM's name.
    let name = text.split("[").nth(1).and_then(|rest| rest.split(']').next()).unwrap().to_owned();
    let by_name = fake.run(&["log", &name]);
    ok(&by_name);
    assert!(stdout(&by_name).contains("make test"), "{}", stdout(&by_name));
}
