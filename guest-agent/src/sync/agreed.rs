//! What host and guest last agreed a synced copy holds, per root, while
//! its Watch call lives.
//!
//! The Watch call ([`super::watch`]) reports a guest change and records it
//! here as agreed; a push Sync ([`super::session`]) applies the host's
//! changes only where the copy still is what was agreed (anything else is a
//! guest change whose report is still to come, which a push must not undo),
//! and records what it wrote. Both run under the root's lock
//! ([`super::lock`]), so they take turns. A second Watch call for a root
//! replaces the first, which ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use hutch_proto::v1::ManifestEntry;

/// The entries both sides agree on, by relative path.
pub type Entries = BTreeMap<Vec<u8>, ManifestEntry>;

/// One watched root's agreed state.
#[derive(Default)]
pub struct Agreed {
    /// The entries.
    pub entries: Entries,
    /// Changed since it was last written to the state file.
    pub unsaved: bool,
}

/// A live Watch call: its ticket and its agreed state.
type Live = (u64, Arc<Mutex<Agreed>>);

/// The live Watch calls' agreed states, by root.
#[derive(Clone, Default)]
pub struct Agreements {
    live: Arc<Mutex<HashMap<String, Live>>>,
    next: Arc<Mutex<u64>>,
}

impl Agreements {
    /// Registers a Watch call on `root` with `entries`, replacing any other;
    /// returns its ticket (to tell whether it was replaced) and its state.
    pub fn register(&self, root: &str, entries: Entries) -> (u64, Arc<Mutex<Agreed>>) {
        let ticket = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            *next += 1;
            *next
        };
        let agreed = Arc::new(Mutex::new(Agreed { entries, unsaved: false }));
        self.live.lock().unwrap_or_else(PoisonError::into_inner).insert(root.to_owned(), (ticket, agreed.clone()));
        (ticket, agreed)
    }

    /// The agreed state of `root`, if a Watch call lives on it.
    pub fn get(&self, root: &str) -> Option<Arc<Mutex<Agreed>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).get(root).map(|(_, a)| a.clone())
    }

    /// Whether `ticket` is still the live Watch call of `root`.
    pub fn is_current(&self, root: &str, ticket: u64) -> bool {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).get(root).is_some_and(|(t, _)| *t == ticket)
    }

    /// Removes the Watch call `ticket` of `root` (if it is still the live one).
    pub fn unregister(&self, root: &str, ticket: u64) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.get(root).is_some_and(|(t, _)| *t == ticket) {
            live.remove(root);
        }
    }
}

/// Locks an agreed state, whatever a panicking holder left.
pub fn lock(agreed: &Mutex<Agreed>) -> std::sync::MutexGuard<'_, Agreed> {
    agreed.lock().unwrap_or_else(PoisonError::into_inner)
}
