//! What a VM of a warm pool carries in its record (see `crate::warm`).

use serde::{Deserialize, Serialize};

/// Marks a VM as one of a project's warm pool: booted and prepared for the
/// settings its key names, and for no command yet. A `hutch run --rm` whose
/// settings have the same key takes it (and clears this), so the VM it gets
/// is the VM a cold boot would have made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolEntry {
    /// A digest of everything that decides the VM's contents (see
    /// `crate::warm::key`).
    pub key: String,
    /// The pool it belongs to: its project's folder under `warm/` in the
    /// state directory.
    pub project: String,
    /// Booting, or ready to be taken.
    pub state: PoolState,
}

/// How far a pool VM is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolState {
    /// Its pool's keeper is booting and preparing it (and holds its lock).
    Warming,
    /// Booted, prepared, waiting; nothing has run in it.
    Ready,
}

impl PoolState {
    /// For `hutch ls`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Warming => "warming",
            PoolState::Ready => "ready",
        }
    }
}
