//! `Sync` and `SnapshotDiff` under hostile input, against a real agent: roots
//! through symlinks, header bombs, calls that fail halfway, concurrent
//! syncs, corrupt streams, swapped files, delete floods. Nothing is written
//! or read outside the snapshot, every failure is a typed status that
//! arrives while nothing of the call still runs, a failed Sync leaves a
//! state that the next Sync and diff get right, and the agent's memory is
//! back under 16 MiB afterwards.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hutch_proto::v1::snapshot_diff_response::Kind as DiffKind;
use hutch_proto::v1::sync_response::Kind as SyncKind;
use hutch_proto::v1::{SnapshotDiffRequest, SyncRequest};
use hutch_tests::rss::{assert_back_under_limit, status_kib};
use hutch_tests::snapshot::{
    SnapshotAgent, archive_chunks, assert_same, delete, finish, listing, raw_diff, raw_sync, raw_sync_requests, start,
};
use hutch_tests::tarball::{archive, bomb, end, file, file_mode, link};
use hutch_tests::{code, pseudo_random, stderr};
use tar::EntryType;
use tonic::Code;

/// An agent with an empty snapshot of its root already synced (so the
/// snapshot and its state exist), and the root as text.
fn synced() -> (SnapshotAgent, String) {
    synced_with(SnapshotAgent::start())
}

fn synced_with(s: SnapshotAgent) -> (SnapshotAgent, String) {
    let root = s.root();
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap().to_owned();
    let (_, first) = raw_sync(&s.socket(), &root, vec![], Vec::new());
    first.expect("the first, empty sync");
    (s, root)
}

/// An agent whose snapshot of a host tree holding `files` was made by
/// `hutch sync` (so its state is the host's own).
fn hutch_synced(files: &[(&str, &str)]) -> SnapshotAgent {
    let s = SnapshotAgent::start();
    let root = s.root();
    std::fs::create_dir_all(&root).unwrap();
    for (name, data) in files {
        std::fs::write(root.join(name), data).unwrap();
    }
    let out = s.hutch("sync", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    s
}

fn refused(result: Result<hutch_proto::v1::SyncSummary, tonic::Status>, case: &str) -> tonic::Status {
    let status = result.expect_err(&format!("{case}: the agent accepted it"));
    assert!(status.message().len() < 1024, "{case}: a {}-byte status", status.message().len());
    status
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Row 1: a snapshot root whose path passes through a symlink that an
/// earlier Sync put into another snapshot.
#[test]
fn a_root_through_a_symlink_in_a_snapshot_is_refused_and_nothing_outside_is_touched() {
    let (s, root) = synced();
    let outside = s.host.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), "untouched\n").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o750)).unwrap();
    let before = listing(&outside, &[]);
    let (_, ok) = raw_sync(&s.socket(), &root, vec![], archive(&[link(b"esc", EntryType::Symlink, outside.to_str().unwrap().as_bytes())]));
    ok.expect("a symlink pointing anywhere is a legitimate snapshot entry");

    let escaped = format!("{root}/esc");
    let (manifest, result) = raw_sync(&s.socket(), &escaped, vec![b"victim".to_vec()], archive(&[file(b"pwned", b"x")]));
    let status = refused(result, "sync through esc");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("symlink"), "{status:?}");
    assert!(manifest.is_empty(), "the agent listed files outside the snapshot: {manifest:?}");
    let diff = raw_diff(&s.socket(), &escaped);
    assert!(diff.is_err(), "SnapshotDiff read through the symlink: {diff:?}");
    assert_eq!(listing(&outside, &[]), before, "the folder outside the snapshot changed");
    assert_back_under_limit(s.agent.pid(), "a root through a symlink");
}

/// Row 2: GNU long-name and PAX headers that claim 64 MiB.
#[test]
fn oversized_long_name_and_pax_headers_are_refused_before_they_are_read() {
    for (case, kind, name) in [("gnu long name", EntryType::GNULongName, &b"././@LongLink"[..]), ("pax", EntryType::XHeader, b"PaxHeader")]
    {
        let (s, root) = synced_with(SnapshotAgent::start_logged());
        let (_, result) = raw_sync(&s.socket(), &root, vec![], bomb(name, kind, 64 << 20, b'a'));
        let status = refused(result, case);
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert!(status.message().contains("4096") || status.message().contains("65536"), "{case}: no limit named in {status:?}");
        let pid = s.agent.pid();
        let peak = status_kib(pid, "VmHWM");
        assert!(peak < 32 * 1024, "{case}: the agent's peak RSS was {peak} KiB: it read the header");
        assert!(s.agent.log().len() < 16 * 1024, "{case}: a {}-byte log", s.agent.log().len());
        assert_back_under_limit(pid, case);
    }
}

/// Row 3: the call fails (a second `start`) while archive data is queued
/// and a file is being written from it.
#[test]
fn when_a_sync_fails_nothing_of_it_is_still_writing() {
    let (s, root) = synced();
    let snap = s.snapshot(Path::new(&root));
    let socket = s.socket();
    let status = hutch_tests::raw::block_on(async {
        let mut client = hutch_tests::raw::connect(&socket).await;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tx.send(start(&root)).await.unwrap();
        let mut responses = client.sync(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        while !matches!(responses.message().await.unwrap().and_then(|m| m.kind), Some(SyncKind::ManifestEnd(_))) {}
        for chunk in archive_chunks(&bomb(b"big", EntryType::Regular, 2 << 30, 0)) {
            tx.send(chunk).await.unwrap();
        }
        // Wait until the agent is writing the 2 GiB file, then break the call.
        let deadline = std::time::Instant::now() + hutch_tests::PROMPT;
        while !snap.join("big").exists() {
            assert!(std::time::Instant::now() < deadline, "the agent never started writing: {:?}", names(&snap));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(start(&root)).await.unwrap();
        responses.message().await.expect_err("a second start must fail the call")
    });
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // The status is out: the agent must have stopped writing and removed
    // what the failed call had half written.
    assert_eq!(names(&snap), Vec::<String>::new(), "still being written after the call ended");
    assert_back_under_limit(s.agent.pid(), "a failed sync");
}

/// Row 4: two Syncs of one root at once.
#[test]
fn concurrent_syncs_of_one_root_never_mix_files() {
    let (s, root) = synced();
    let contents = |side: u64| -> Vec<Vec<u8>> { (0..60).map(|i| pseudo_random(96 * 1024, side * 1000 + i)).collect() };
    let (a, b) = (contents(1), contents(2));
    let tar = |files: &[Vec<u8>]| {
        let parts: Vec<Vec<u8>> = files.iter().enumerate().map(|(i, data)| file(format!("f{i:02}").as_bytes(), data)).collect();
        archive(&parts)
    };
    let (tar_a, tar_b) = (tar(&a), tar(&b));
    let snap = s.snapshot(Path::new(&root));
    for round in 0..3 {
        let (one, two) = std::thread::scope(|scope| {
            let one = scope.spawn(|| raw_sync(&s.socket(), &root, vec![], tar_a.clone()).1);
            let two = scope.spawn(|| raw_sync(&s.socket(), &root, vec![], tar_b.clone()).1);
            (one.join().unwrap(), two.join().unwrap())
        });
        one.unwrap_or_else(|e| panic!("round {round}: sync A failed: {e:?}"));
        two.unwrap_or_else(|e| panic!("round {round}: sync B failed: {e:?}"));
        let found: Vec<Vec<u8>> = (0..60).map(|i| std::fs::read(snap.join(format!("f{i:02}"))).unwrap()).collect();
        assert!(found == a || found == b, "round {round}: the snapshot mixes the two syncs' files");
        assert_eq!(names(&snap).len(), 60, "round {round}: leftovers: {:?}", names(&snap));
    }
    assert_back_under_limit(s.agent.pid(), "concurrent syncs");
}

/// Row 5: a zstd stream whose checksum does not match.
#[test]
fn a_corrupt_archive_is_refused_and_leaves_nothing_it_carried() {
    let (s, root) = synced();
    let tar = [file(b"a.txt", b"hello\n"), end()].concat();
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.write_all(&tar).unwrap();
    let mut corrupt = encoder.finish().unwrap();
    *corrupt.last_mut().unwrap() ^= 0x40; // the checksum's last byte, as the zstd CLI would notice
    let (_, result) = raw_sync(&s.socket(), &root, vec![], corrupt);
    let status = refused(result, "flipped checksum");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("checksum"), "{status:?}");
    let snap = s.snapshot(Path::new(&root));
    assert!(!snap.join("a.txt").exists(), "a file from a corrupt archive was kept");
    assert!(raw_diff(&s.socket(), &root).unwrap().is_empty(), "the corrupt sync left a diff");
    assert_back_under_limit(s.agent.pid(), "a corrupt archive");
}

/// Row 6: a Sync refused halfway, then a diff, a sync and a diff.
#[test]
fn after_a_sync_refused_halfway_diff_and_the_next_sync_are_right() {
    let s = hutch_synced(&[("host.txt", "host\n")]);
    let root = s.root();
    let parts = [file(b"a.txt", b"A\n"), file(b"b.txt", b"B\n"), file(b"../evil", b"x")];
    let (_, result) = raw_sync(&s.socket(), root.to_str().unwrap(), vec![], archive(&parts));
    assert_eq!(refused(result, "`..`").code(), Code::InvalidArgument);
    let diff = raw_diff(&s.socket(), root.to_str().unwrap()).unwrap();
    let changed: Vec<String> = diff
        .iter()
        .filter_map(|m| match &m.kind {
            Some(DiffKind::Entry(e)) => Some(String::from_utf8_lossy(&e.path).into_owned()),
            _ => None,
        })
        .collect();
    assert!(changed.is_empty(), "files the host sent are reported as guest changes: {changed:?}");

    let out = s.hutch("sync", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_same(&listing(&root, &[]), &listing(&s.snapshot(&root), &[]));
    let out = s.hutch("diff", &[]);
    assert_eq!((code(&out), out.stdout.len()), (0, 0), "{}", stderr(&out));
}

/// Row 7: the guest swaps a FIFO in while a client reads a diff slowly.
#[test]
fn a_fifo_swapped_in_during_a_diff_ends_the_diff_instead_of_hanging_it() {
    let s = hutch_synced(&[("a.bin", "a"), ("z.txt", "z\n")]);
    let root = s.root();
    let snap = s.snapshot(&root);
    // A guest change large enough that the agent blocks on a slow reader
    // while sending it, and one after it.
    std::fs::OpenOptions::new().write(true).open(snap.join("a.bin")).unwrap().set_len(256 << 20).unwrap();
    std::fs::write(snap.join("z.txt"), "changed in the guest\n").unwrap();

    let socket = s.socket();
    let root_text = root.to_str().unwrap().to_owned();
    let outcome = hutch_tests::raw::block_on(async {
        let mut client = hutch_tests::raw::connect(&socket).await;
        let mut stream = client.snapshot_diff(SnapshotDiffRequest { root: root_text }).await.unwrap().into_inner();
        let first = stream.message().await.unwrap();
        assert!(matches!(first.and_then(|m| m.kind), Some(DiffKind::Entry(_))));
        // The agent is now stuck sending a.bin's contents to us.
        std::fs::remove_file(snap.join("z.txt")).unwrap();
        nix::unistd::mkfifo(&snap.join("z.txt"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(status),
                }
            }
        })
        .await
    });
    let status = outcome.expect("the diff hung on the FIFO").expect_err("the diff reported a FIFO as a file");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("z.txt"), "{status:?}");
    assert_back_under_limit(s.agent.pid(), "a diff of 256 MiB cut short");
}

/// Row 12: many large delete lists before the archive.
#[test]
fn delete_floods_are_applied_as_they_come_not_held() {
    let (s, root) = synced();
    let long = "x".repeat(4000);
    let requests: Vec<SyncRequest> =
        (0..100).map(|i| delete((0..750).map(|j| format!("gone-{i}-{j}/{long}").into_bytes()).collect())).chain([finish()]).collect();
    let (_, result) = raw_sync_requests(&s.socket(), &root, requests);
    result.expect("deleting paths that do not exist is fine");
    let peak = status_kib(s.agent.pid(), "VmHWM");
    assert!(peak < 48 * 1024, "the agent's peak RSS was {peak} KiB for 300 MB of delete lists");
    assert_back_under_limit(s.agent.pid(), "a delete flood");

    let (_, result) = raw_sync_requests(&s.socket(), &root, vec![delete(vec![b"a".repeat(5000)]), finish()]);
    let status = refused(result, "a 5000-byte path");
    assert!(status.message().contains("4096"), "{status:?}");
    let (_, result) =
        raw_sync_requests(&s.socket(), &root, vec![delete((0..20_000).map(|i| format!("p{i}").into_bytes()).collect()), finish()]);
    let status = refused(result, "20000 paths in one list");
    assert!(status.message().contains("16384"), "{status:?}");
}

/// A delete flood of paths that do not exist, in a folder that does: none
/// of them is remembered past its own message. (The agent kept each one
/// until the call ended: these 75,000 paths of 4 KB held 300 MB.) The
/// folder is deep, so each path is long; each message is what the test
/// above sends.
#[test]
fn deletes_of_missing_paths_in_an_existing_folder_are_not_held_for_the_whole_call() {
    let (s, root) = synced();
    let deep: Vec<String> = (0..15).map(|i| format!("{i:02}{}", "d".repeat(248))).collect();
    let deep = deep.join("/");
    let in_guest = s.snapshot(Path::new(&root));
    std::fs::create_dir_all(in_guest.join(&deep)).unwrap();
    let name = |i: usize, j: usize| format!("{deep}/{i:03}-{j:03}-{}", "m".repeat(200)).into_bytes();
    let requests: Vec<SyncRequest> = (0..100).map(|i| delete((0..750).map(|j| name(i, j)).collect())).chain([finish()]).collect();
    let (_, result) = raw_sync_requests(&s.socket(), &root, requests);
    result.expect("deleting paths that do not exist is fine");
    let peak = status_kib(s.agent.pid(), "VmHWM");
    assert!(peak < 48 * 1024, "the agent's peak RSS was {peak} KiB for 300 MB of deletes of missing paths");
    assert_back_under_limit(s.agent.pid(), "a flood of deletes of missing paths");
}

/// Setuid and setgid bits never reach the snapshot, and that is no change.
#[test]
fn setuid_and_setgid_bits_are_dropped_and_the_next_sync_finds_nothing_to_do() {
    let s = SnapshotAgent::start();
    let root = s.root();
    std::fs::create_dir_all(&root).unwrap();
    for (name, mode) in [("suid", 0o4755), ("sgid", 0o2750)] {
        std::fs::write(root.join(name), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = s.hutch("sync", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let snap = s.snapshot(&root);
    let mode = |name: &str| std::fs::metadata(snap.join(name)).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode("suid"), mode("sgid")), (0o755, 0o750));
    let out = s.hutch("sync", &[]);
    assert!(stderr(&out).contains("up to date"), "the bits made the next sync resend: {}", stderr(&out));
    // A raw archive with the bits set is applied without them too.
    let (_, ok) = raw_sync(&s.socket(), root.to_str().unwrap(), vec![], archive(&[file_mode(b"raw", b"x", 0o6777)]));
    ok.unwrap();
    assert_eq!(mode("raw"), 0o777);
}
