//! The agent trusts nothing in a Sync: hand-made archives with `..`, absolute
//! paths, devices, fifos, hard links and paths through symlinks are refused
//! over the real gRPC call, and nothing outside the snapshot is written.

use std::path::Path;

use hutch_tests::snapshot::{SnapshotAgent, listing, raw_sync};
use hutch_tests::tarball::{archive, file, gnu_long_name, link, pax_path};
use tar::EntryType;

/// Runs one malicious sync and checks it was refused with `why` in the message
/// and that nothing changed outside the snapshot.
fn refused(case: &str, parts: &[Vec<u8>], why: &str) {
    let s = SnapshotAgent::start();
    let root = s.root();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("host-file"), "host\n").unwrap();
    // The snapshot must exist first so symlinks inside it can be planted.
    let (_, first) = raw_sync(&s.socket(), root.to_str().unwrap(), vec![], Vec::new());
    assert!(first.is_ok(), "{case}: empty sync failed: {first:?}");
    let outside = s.host.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), "untouched\n").unwrap();
    let before_host = listing(s.host.path(), &[]);
    let before_prefix = listing(&s.prefix, &[root.strip_prefix("/").unwrap().to_str().unwrap()]);

    let (_, result) = raw_sync(&s.socket(), root.to_str().unwrap(), vec![], archive(parts));
    let status = result.expect_err(&format!("{case}: the agent accepted a malicious archive"));
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{case}: {status:?}");
    assert!(status.message().contains(why), "{case}: expected {why:?} in {:?}", status.message());
    assert_eq!(listing(s.host.path(), &[]), before_host, "{case}: the host side changed");
    let after_prefix = listing(&s.prefix, &[root.strip_prefix("/").unwrap().to_str().unwrap()]);
    assert_eq!(after_prefix, before_prefix, "{case}: something was written beside the snapshot");
    assert_eq!(std::fs::read_to_string(outside.join("victim")).unwrap(), "untouched\n");
    assert!(!Path::new("/tmp/hutch-pwned").exists(), "{case}: wrote to /tmp");
}

#[test]
fn dot_dot_is_refused() {
    refused("..", &[file(b"../../../../outside/pwned", b"x")], "`..`");
    refused("a/../..", &[file(b"a/../../pwned", b"x")], "`..`");
}

#[test]
fn absolute_paths_are_refused() {
    refused("absolute", &[file(b"/tmp/hutch-pwned", b"x")], "absolute");
}

#[test]
fn long_names_are_checked_too() {
    let long = [b"../".repeat(40).as_slice(), b"tmp/hutch-pwned"].concat();
    refused("gnu long name", &[gnu_long_name(&long), file(b"short", b"x")], "`..`");
    refused("pax path", &[pax_path(b"../../pwned"), file(b"short", b"x")], "`..`");
}

#[test]
fn special_files_and_hard_links_are_refused() {
    refused("char device", &[link(b"null", EntryType::Char, b"")], "device");
    refused("block device", &[link(b"sda", EntryType::Block, b"")], "device");
    refused("fifo", &[link(b"fifo", EntryType::Fifo, b"")], "fifo");
    refused("hard link", &[link(b"passwd", EntryType::Link, b"/etc/passwd")], "hard links");
}

#[test]
fn paths_through_symlinks_are_refused() {
    refused("symlink out", &[link(b"escape", EntryType::Symlink, b"/tmp"), file(b"escape/hutch-pwned", b"x")], "symlink");
    refused("symlink in", &[link(b"inner", EntryType::Symlink, b"."), file(b"inner/x", b"x")], "symlink");
    refused("symlink up", &[link(b"up", EntryType::Symlink, b"../../../../.."), file(b"up/tmp/hutch-pwned", b"x")], "symlink");
}

#[test]
fn a_file_over_a_symlink_replaces_the_link_not_its_target() {
    let s = SnapshotAgent::start();
    let root = s.root();
    std::fs::create_dir_all(&root).unwrap();
    let victim = s.host.path().join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let sock = s.socket();
    let (_, ok) =
        raw_sync(&sock, root.to_str().unwrap(), vec![], archive(&[link(b"evil", EntryType::Symlink, victim.to_str().unwrap().as_bytes())]));
    ok.unwrap();
    let (_, ok) = raw_sync(&sock, root.to_str().unwrap(), vec![], archive(&[file(b"evil", b"overwritten?\n")]));
    ok.unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    let snap = s.snapshot(&root);
    assert!(std::fs::symlink_metadata(snap.join("evil")).unwrap().is_file());
}

#[test]
fn deletions_are_checked_and_stay_inside() {
    let s = SnapshotAgent::start();
    let root = s.root();
    std::fs::create_dir_all(&root).unwrap();
    let outside = s.host.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), "untouched\n").unwrap();
    let sock = s.socket();
    let (_, ok) =
        raw_sync(&sock, root.to_str().unwrap(), vec![], archive(&[link(b"out", EntryType::Symlink, outside.to_str().unwrap().as_bytes())]));
    ok.unwrap();
    let (_, refused) = raw_sync(&sock, root.to_str().unwrap(), vec![b"../outside/victim".to_vec()], Vec::new());
    assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);
    let (_, refused) = raw_sync(&sock, root.to_str().unwrap(), vec![b"out/victim".to_vec()], Vec::new());
    assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);
    // Deleting the symlink itself removes the link, not what it points to.
    let (_, ok) = raw_sync(&sock, root.to_str().unwrap(), vec![b"out".to_vec()], Vec::new());
    ok.unwrap();
    assert_eq!(std::fs::read_to_string(outside.join("victim")).unwrap(), "untouched\n");
}
