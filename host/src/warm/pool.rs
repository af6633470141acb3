//! The VMs of warm pools, found through their records (`VmRecord::pool`):
//! listing a project's, taking a ready one for a run, dropping them.
//!
//! Each pool VM is an ordinary VM folder (`vms/warm-…`), so `hutch ls`,
//! `rm` and the daemons' bookkeeping apply to it as to any VM. Its lock
//! (`state::VmLock`) says who owns it: the keeper while it boots the VM, a
//! run from the moment it takes it; nobody while it waits. A run takes one
//! by locking it without waiting and then clearing its pool mark, so two
//! runs never get the same VM, and a VM that is still booting is never
//! taken.

use crate::backend::{self, Backend, VmState};
use crate::state::{PoolState, StateDir, VmLock, VmName, VmRecord};

/// A VM a run has taken from a pool: no longer in it, and locked by the run
/// until it is deleted.
pub struct Taken {
    /// Its record (pool mark cleared, saved).
    pub record: VmRecord,
    /// Its lock, held for the run.
    pub lock: VmLock,
}

/// Every pool VM of project `project` (any key, any state), oldest first.
pub fn members(state: &StateDir, project: &str) -> Vec<VmRecord> {
    let mut members: Vec<VmRecord> = state
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, record)| record.ok())
        .filter(|record| record.pool.as_ref().is_some_and(|p| p.project == project))
        .collect();
    members.sort_by_key(|r| (r.created_unix, r.name.to_string()));
    members
}

/// A name for a new VM of the pool whose key is `key`:
/// `warm-<8 digits of the key>-<6 random hex digits>`.
#[allow(clippy::expect_used, reason = "\"warm-vm\" is a valid VM name")]
pub fn new_name(key: &str) -> VmName {
    let mut random = [0u8; 3];
    if getrandom::fill(&mut random).is_err() {
        random = std::process::id().to_le_bytes()[..3].try_into().unwrap_or_default();
    }
    let short: String = key.chars().filter(char::is_ascii_hexdigit).take(8).collect();
    let name = format!("warm-{short}-{:02x}{:02x}{:02x}", random[0], random[1], random[2]);
    VmName::new(&name).unwrap_or_else(|_| VmName::new("warm-vm").expect("a valid name"))
}

/// Takes a ready VM of key `key` for a run, if one is there and running:
/// locks it, checks it again, and clears its pool mark. A ready VM found
/// stopped (the host rebooted, someone stopped it) is deleted on the way.
pub fn take(state: &StateDir, backend: &dyn Backend, key: &str) -> Option<Taken> {
    let ready = |record: &VmRecord| record.pool.as_ref().is_some_and(|p| p.key == key && p.state == PoolState::Ready);
    let mut candidates: Vec<VmRecord> =
        state.list().unwrap_or_default().into_iter().filter_map(|(_, record)| record.ok()).filter(|r| ready(r)).collect();
    candidates.sort_by_key(|r| (r.created_unix, r.name.to_string()));
    for candidate in candidates {
        let dir = state.vm_dir(&candidate.name);
        let Ok(Some(lock)) = VmLock::try_acquire(&dir) else { continue };
        // Another run may have taken it and let go since the list was read.
        let Ok(mut record) = state.load(&candidate.name) else { continue };
        if !ready(&record) {
            continue;
        }
        if !matches!(backend.state(&record, &dir), Ok(VmState::Running)) {
            tracing::info!("{}: a ready VM that no longer runs; deleting it", record.name);
            discard(state, backend, &record);
            continue;
        }
        record.pool = None;
        if record.save(&dir).is_err() {
            continue;
        }
        return Some(Taken { record, lock });
    }
    None
}

/// Deletes pool VM `record` if nobody holds it (or, with `wait`, once its
/// holder lets go); returns whether it was deleted. A VM a run has taken
/// meanwhile (no pool mark any more) is left to that run.
pub fn drop_vm(state: &StateDir, record: &VmRecord, wait: bool) -> bool {
    let dir = state.vm_dir(&record.name);
    let lock = if wait { VmLock::acquire(&dir).ok() } else { VmLock::try_acquire(&dir).ok().flatten() };
    let Some(_lock) = lock else { return false };
    let Ok(current) = state.load(&record.name) else { return false };
    if current.pool.is_none() {
        return false;
    }
    match backend::for_kind(current.kind(), state) {
        Ok(backend) => {
            discard(state, backend.as_ref(), &current);
            true
        }
        Err(e) => {
            tracing::warn!("{}: {e}", current.name);
            false
        }
    }
}

/// Deletes a pool VM whose lock the caller holds.
fn discard(state: &StateDir, backend: &dyn Backend, record: &VmRecord) {
    if let Err(e) = crate::lifecycle::destroy(state, backend, record) {
        tracing::warn!("deleting {}: {e}", record.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_valid_short_and_distinct() {
        let key = "0123456789abcdef".repeat(4);
        let (a, b) = (new_name(&key), new_name(&key));
        assert!(a.as_str().starts_with("warm-01234567-"), "{a}");
        assert_eq!(a.as_str().len(), "warm-01234567-abcdef".len());
        assert_ne!(a, b);
    }
}
