//! One Sync or SnapshotDiff at a time per snapshot.
//!
//! Two Syncs of one root at once would interleave their deletions and files
//! (and each would save a state that describes neither), and a diff during
//! a Sync would report the host's half-applied files as guest changes. So
//! each call on a root holds that root's lock for its whole length; calls
//! on other roots do not wait. A call waits for the lock as long as its
//! client does: a client that gives up is a call that ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::OwnedMutexGuard;

/// The per-root locks of one agent.
#[derive(Clone, Default)]
pub struct RootLocks {
    /// Locks by root; an entry lives while some call holds or awaits it.
    held: Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>,
}

impl RootLocks {
    /// Waits for, and takes, the lock of `root` until the guard is dropped.
    pub async fn lock(&self, root: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.retain(|_, lock| lock.strong_count() > 0);
            match held.get(root).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    held.insert(root.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_root_waits_and_another_does_not() {
        let locks = RootLocks::default();
        let held = locks.lock("/a").await;
        assert!(tokio::time::timeout(std::time::Duration::ZERO, locks.lock("/b")).await.is_ok());
        assert!(tokio::time::timeout(std::time::Duration::ZERO, locks.lock("/a")).await.is_err());
        drop(held);
        assert!(tokio::time::timeout(std::time::Duration::ZERO, locks.lock("/a")).await.is_ok());
    }
}
