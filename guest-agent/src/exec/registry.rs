//! The set of process groups the agent is responsible for right now.
//!
//! Each running exec registers its group; when the agent itself is asked to
//! stop, it kills every registered group so nothing it started outlives it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Live process groups, shared by every exec of one agent.
#[derive(Clone, Default)]
pub struct Groups {
    inner: Arc<Mutex<HashSet<i32>>>,
}

/// Keeps a group registered until dropped.
pub struct Registration {
    groups: Groups,
    pgid: i32,
}

impl Groups {
    /// Registers `pgid` for as long as the returned value lives.
    pub fn register(&self, pgid: i32) -> Registration {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).insert(pgid);
        Registration { groups: self.clone(), pgid }
    }

    /// Number of execs running now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Sends SIGKILL to every registered group (agent shutdown).
    pub fn kill_all(&self) {
        for &pgid in self.inner.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut running = self.groups.inner.lock().unwrap_or_else(PoisonError::into_inner);
        running.remove(&self.pgid);
        if running.is_empty() {
            // The agent is idle now: let go of what the execs used.
            crate::malloc::give_back();
        }
    }
}
