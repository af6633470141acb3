//! What the agent remembers of each snapshot: the manifest it last received
//! from the host, so `SnapshotDiff` can tell what the guest changed since.
//!
//! One file per snapshot, `<state dir>/snapshots/<hash of the root>.state`,
//! holding a protobuf `SnapshotState`, replaced atomically.

use std::io;
use std::path::{Path, PathBuf};

use hutch_proto::v1::SnapshotState;
use prost::Message;

/// Where the state file of the snapshot of `root` lives.
pub fn path(state_dir: &Path, root: &str) -> PathBuf {
    state_dir.join("snapshots").join(format!("{:016x}.state", fnv1a(root.as_bytes())))
}

/// Reads a snapshot's state; `None` if it was never synced.
pub fn load(state_dir: &Path, root: &str) -> io::Result<Option<SnapshotState>> {
    let bytes = match std::fs::read(path(state_dir, root)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let state = SnapshotState::decode(bytes.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((state.root == root).then_some(state))
}

/// Whether a state file exists for `root`.
pub fn exists(state_dir: &Path, root: &str) -> bool {
    path(state_dir, root).exists()
}

/// Writes a snapshot's state (temp file + rename).
pub fn save(state_dir: &Path, state: &SnapshotState) -> io::Result<()> {
    let path = path(state_dir, &state.root);
    let dir = path.parent().unwrap_or(state_dir);
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, state.encode_to_vec())?;
    std::fs::rename(&tmp, &path)
}

/// FNV-1a, 64 bits: a stable file name for a root path.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}
