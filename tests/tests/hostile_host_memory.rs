//! The host under a hostile agent (issue 23), sizes and counts: whatever
//! the agent streams or packs into a message, hutch's resident set stays
//! under 64 MiB above what the same command needs against a small answer
//! (measured from the kernel's own account of the process, `wait4`).

use std::process::Command;

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::snapshot_diff_response::Kind as DiffKind;
use hutch_proto::v1::sync_response::Kind as SyncKind;
use hutch_proto::v1::{
    ChangedEntry, EntryKind, ExecResponse, Exited, ManifestEntry, PathManifest, SnapshotDiffResponse, Started, SyncResponse, exited,
};
use hutch_tests::hostile_agent::{HostileAgent, Plan, Step, empty_items, msg};
use hutch_tests::rss::run_measured;
use hutch_tests::{code, stderr};

/// What a flood may add to hutch's resident set (the bound).
const ABOVE_BASELINE_KIB: u64 = 64 * 1024;

/// `hutch` aimed at `agent`, waiting at most 20 s for each answer.
fn hutch(agent: &HostileAgent) -> Command {
    agent.hutch("20")
}

/// Peak RSS of `args` against `agent`, and its output.
fn peak(agent: &HostileAgent, args: &[&str]) -> (std::process::Output, u64) {
    run_measured(hutch(agent).args(args))
}

fn started() -> Step {
    msg(&ExecResponse { kind: Some(Kind::Started(Started { pid: 1, session: String::new() })) })
}

fn exited_0() -> Step {
    msg(&ExecResponse { kind: Some(Kind::Exited(Exited { status: Some(exited::Status::Code(0)), ..Default::default() })) })
}

#[test]
fn exec_json_keeps_a_bounded_part_of_a_flood_and_says_how_much_it_cut() {
    let chunk = msg(&ExecResponse { kind: Some(Kind::Stdout(vec![b'y'; 256 << 10].into())) });
    let Step::Message(chunk) = chunk else { unreachable!() };
    let small = HostileAgent::start(Plan::new().with_info().on("Exec", vec![started(), Step::Message(chunk.clone()), exited_0()]));
    let (out, baseline) = peak(&small, &["exec", "--json", "--", "cat"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // 512 MiB of output.
    let flood =
        HostileAgent::start(Plan::new().with_info().on("Exec", vec![started(), Step::Flood { message: chunk, times: 2048 }, exited_0()]));
    let (out, flooded) = peak(&flood, &["exec", "--json", "--", "cat"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(flooded < baseline + ABOVE_BASELINE_KIB, "hutch held {flooded} KiB for 512 MiB of output (baseline {baseline} KiB)");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stdout"].as_str().unwrap().len(), 8 << 20);
    assert_eq!(report["stdout_cut_bytes"], (512u64 << 20) - (8 << 20));
}

#[test]
fn answers_packed_with_empty_items_are_refused_before_they_are_decoded() {
    // 4 MiB of empty items: two million values once decoded.
    let items = (4 << 20) / 2 - 16;
    let baseline_agent = HostileAgent::start(Plan::new().with_info().on("ListSessions", vec![Step::Message(Vec::new())]));
    let (out, baseline) = peak(&baseline_agent, &["ps"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for (case, method, args, message) in
        [("sessions", "ListSessions", &["ps"][..], empty_items(1, items)), ("capabilities", "Info", &["ping"][..], empty_items(5, items))]
    {
        let agent = HostileAgent::start(Plan::new().with_info().on(method, vec![Step::Message(message)]));
        let (out, used) = peak(&agent, args);
        assert_eq!(code(&out), 125, "{case}: {}", stderr(&out));
        assert!(stderr(&out).contains("items in one message"), "{case}: {}", stderr(&out));
        assert!(used < baseline + ABOVE_BASELINE_KIB, "{case}: hutch held {used} KiB (baseline {baseline} KiB)");
    }
}

#[test]
fn a_diff_holds_one_bounded_file_at_a_time() {
    let ws = tempfile::tempdir().unwrap();
    let ws_path = ws.path().canonicalize().unwrap();
    let entry = |path: &str| {
        let current =
            ManifestEntry { path: path.into(), kind: EntryKind::EntryFile as i32, mode: 0o644, size: 256 << 20, ..Default::default() };
        msg(&SnapshotDiffResponse {
            kind: Some(DiffKind::Entry(ChangedEntry { path: path.into(), synced: None, current: Some(current), too_large: false })),
        })
    };
    let Step::Message(data) = msg(&SnapshotDiffResponse { kind: Some(DiffKind::Data(vec![b'z'; 1 << 20])) }) else { unreachable!() };
    let small = HostileAgent::start(Plan::new().with_info().on("SnapshotDiff", vec![entry("small"), Step::Message(data.clone())]));
    let args = ["diff", "--workspace", ws_path.to_str().unwrap()];
    let (out, baseline) = peak(&small, &args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Four files of 256 MiB each.
    let script: Vec<Step> =
        ["a", "b", "c", "d"].iter().flat_map(|name| [entry(name), Step::Flood { message: data.clone(), times: 256 }]).collect();
    let flood = HostileAgent::start(Plan::new().with_info().on("SnapshotDiff", script));
    let (out, used) = peak(&flood, &args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(used < baseline + ABOVE_BASELINE_KIB, "hutch held {used} KiB for a 1 GiB diff (baseline {baseline} KiB)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("Binary files").count(), 4);
    assert!(stderr(&out).contains("larger than 8 MiB"), "{}", stderr(&out));
}

#[test]
fn a_sync_manifest_may_not_outgrow_the_host_tree_by_more_than_its_cap() {
    let ws = tempfile::tempdir().unwrap();
    let ws_path = ws.path().canonicalize().unwrap();
    let args = ["sync", "-q", "--workspace", ws_path.to_str().unwrap()];
    let end = msg(&SyncResponse { kind: Some(SyncKind::ManifestEnd(hutch_proto::v1::ManifestEnd { entries: 0, fresh: true })) });
    let summary = msg(&SyncResponse { kind: Some(SyncKind::Summary(Default::default())) });
    let small = HostileAgent::start(Plan::new().with_info().on("Sync", vec![end, summary]));
    let (out, baseline) = peak(&small, &args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let entries = (0..16_000)
        .map(|j| ManifestEntry {
            path: format!("f{j:05}-{}", "n".repeat(100)).into_bytes(),
            kind: EntryKind::EntryFile as i32,
            ..Default::default()
        })
        .collect();
    let Step::Message(chunk) = msg(&SyncResponse { kind: Some(SyncKind::Manifest(PathManifest { entries })) }) else { unreachable!() };
    // 1.6 million entries of 110 bytes, against an empty host tree.
    let agent = HostileAgent::start(Plan::new().with_info().on("Sync", vec![Step::Flood { message: chunk, times: 100 }]));
    let (out, used) = peak(&agent, &args);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("manifest entries beyond the host's"), "{}", stderr(&out));
    assert!(used < baseline + ABOVE_BASELINE_KIB, "hutch held {used} KiB for a 1.6-million-entry manifest (baseline {baseline} KiB)");
}
