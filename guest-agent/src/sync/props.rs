//! Property tests of the Sync receiver: arbitrary paths, arbitrary tar
//! streams and arbitrary sequences of deletes and entries (with symlinks out
//! of the snapshot already planted in it) never panic and never change
//! anything outside the snapshot. A fixed number of cases each, so CI time
//! stays bounded; `PROPTEST_CASES=N` runs more locally.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use proptest::collection::vec;
use proptest::prelude::*;

use super::archive::Reader;
use super::receive::Applier;
use super::validate::{SafeRoot, components};

/// Stands for the absolute path of the folder beside the snapshot.
const OUTSIDE: &[u8] = b"@outside";

/// One thing a hostile Sync may do.
#[derive(Debug, Clone)]
enum Op {
    Delete(Vec<u8>),
    File(Vec<u8>, Vec<u8>),
    Dir(Vec<u8>),
    Symlink(Vec<u8>, Vec<u8>),
    HardLink(Vec<u8>, Vec<u8>),
    Fifo(Vec<u8>),
}

fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"out".to_vec()),
        Just(b"up".to_vec()),
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(Vec::new()),
        vec(any::<u8>(), 1..6),
    ]
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), vec(component(), 1..4), any::<bool>()).prop_map(|(absolute, parts, slash)| {
        let mut p = if absolute { b"/".to_vec() } else { Vec::new() };
        p.extend(parts.join(&b'/'));
        if slash {
            p.push(b'/');
        }
        p.truncate(99);
        p
    })
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(OUTSIDE.to_vec()), Just(b"..".to_vec()), Just(b"/".to_vec()), Just(b"../../..".to_vec()), path()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        path().prop_map(Op::Delete),
        (path(), vec(any::<u8>(), 0..64)).prop_map(|(p, d)| Op::File(p, d)),
        path().prop_map(Op::Dir),
        (path(), target()).prop_map(|(p, t)| Op::Symlink(p, t)),
        (path(), target()).prop_map(|(p, t)| Op::HardLink(p, t)),
        path().prop_map(Op::Fifo),
    ]
}

/// A raw tar header: names and targets go in unchecked.
fn header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    let link = &link[..link.len().min(100)];
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(0o6755);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// The archive of the ops that are entries, and the delete lists.
fn build(ops: &[Op], outside: &Path) -> (Vec<Vec<u8>>, Vec<u8>) {
    let resolve = |t: &[u8]| if t == OUTSIDE { outside.as_os_str().as_bytes().to_vec() } else { t.to_vec() };
    let mut deletes = Vec::new();
    let mut tar = Vec::new();
    for op in ops {
        match op {
            Op::Delete(p) => deletes.push(p.clone()),
            Op::File(p, data) => {
                tar.extend(header(p, tar::EntryType::Regular, data.len() as u64, b""));
                tar.extend(data);
                tar.resize(tar.len().div_ceil(512) * 512, 0);
            }
            Op::Dir(p) => tar.extend(header(p, tar::EntryType::Directory, 0, b"")),
            Op::Symlink(p, t) => tar.extend(header(p, tar::EntryType::Symlink, 0, &resolve(t))),
            Op::HardLink(p, t) => tar.extend(header(p, tar::EntryType::Link, 0, &resolve(t))),
            Op::Fifo(p) => tar.extend(header(p, tar::EntryType::Fifo, 0, b"")),
        }
    }
    tar.extend([0; 1024]);
    (deletes, zstd::stream::encode_all(tar.as_slice(), 1).expect("zstd"))
}

/// Every path below `dir` (symlinks not followed) with what it is.
fn listing(dir: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let what = if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", std::os::unix::fs::PermissionsExt::mode(&meta.permissions()))
            } else if meta.is_symlink() {
                format!("link {:?}", std::fs::read_link(&path).ok())
            } else {
                format!("file {:?}", std::fs::read(&path).ok())
            };
            out.insert(path.as_os_str().as_bytes().to_vec(), what);
        }
    }
    out
}

fn open(path: &Path) -> OwnedFd {
    nix::fcntl::open(path, nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty())
        .expect("open the root")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// The path validator never panics and only lets plain names through.
    #[test]
    fn validated_paths_are_plain_names(bytes in vec(any::<u8>(), 0..5000)) {
        if let Ok(parts) = components(&bytes) {
            prop_assert!(bytes.len() <= crate::limits::MAX_PATH_BYTES);
            for part in parts {
                prop_assert!(!part.is_empty() && part != b"." && part != b"..");
                prop_assert!(!part.contains(&b'/') && !part.contains(&0));
            }
        }
    }

    /// The tar reader never panics on arbitrary bytes, and reads each
    /// entry's data only up to its size.
    #[test]
    fn the_tar_reader_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..4096), flip in vec((any::<usize>(), any::<u8>()), 0..8)) {
        for input in [bytes.clone(), {
            // A valid archive with bytes flipped (checksums and all).
            let mut valid = [header(b"f", tar::EntryType::Regular, 600, b""), vec![7; 1024], header(b"d/", tar::EntryType::Directory, 0, b""), vec![0; 1024]].concat();
            for (at, byte) in &flip {
                let i = at % valid.len();
                valid[i] ^= byte;
            }
            valid
        }] {
            let mut reader = Reader::new(input.as_slice());
            for _ in 0..64 {
                match reader.next_header() {
                    Ok(Some(h)) => {
                        let mut data = Vec::new();
                        let read = reader.data().read_to_end(&mut data);
                        prop_assert!(read.is_err() || data.len() as u64 == h.size);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    /// Whatever a Sync sends, with symlinks out of the snapshot already in
    /// it, nothing outside the snapshot changes and nothing panics.
    #[test]
    fn nothing_a_sync_sends_reaches_outside_the_snapshot(ops in vec(op(), 1..12)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (snap, outside) = (dir.path().join("snap"), dir.path().join("outside"));
        std::fs::create_dir_all(outside.join("sub")).expect("outside");
        std::fs::write(outside.join("victim"), "untouched").expect("victim");
        std::fs::create_dir(&snap).expect("snapshot");
        std::os::unix::fs::symlink(&outside, snap.join("out")).expect("planted link");
        std::os::unix::fs::symlink("..", snap.join("up")).expect("planted link");
        let before = listing(&outside);
        let (deletes, archive) = build(&ops, &outside);

        let mut applier = Applier::new(SafeRoot::new(open(&snap)), BTreeMap::new(), Arc::new(AtomicBool::new(false)));
        let applied = deletes.iter().try_for_each(|p| applier.delete(p)).and_then(|()| applier.unpack(&mut archive.as_slice()));
        if applied.is_ok() {
            let _ = applier.finish(None);
        }
        let _ = applier.settle_failure(None, applied.is_err());

        prop_assert_eq!(listing(&outside), before, "the folder outside changed");
        let beside: Vec<_> = std::fs::read_dir(dir.path()).expect("read").map(|e| e.expect("entry").file_name()).collect();
        prop_assert_eq!(beside.len(), 2, "something was created beside the snapshot: {:?}", beside);
        prop_assert!(std::fs::symlink_metadata(&snap).expect("snapshot").is_dir());
        for (path, what) in listing(&snap) {
            prop_assert!(!what.starts_with("file") || !path.ends_with(b".tmp"), "a temporary file was left: {:?}", String::from_utf8_lossy(&path));
        }
    }
}
