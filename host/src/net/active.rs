//! The guest's open connections to the outside, by host and port, so that a
//! policy change cuts the ones it now refuses (`hutch deny` of a host the
//! guest is talking to ends those tunnels at once) and leaves every other
//! connection alone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

struct Entry {
    host: String,
    port: u16,
    cut: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

/// The registry of one network process.
#[derive(Clone, Default)]
pub struct Active {
    inner: Arc<Mutex<(u64, BTreeMap<u64, Entry>)>>,
}

impl Active {
    fn lock(&self) -> MutexGuard<'_, (u64, BTreeMap<u64, Entry>)> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection to `host:port` for as long as the returned value lives.
    pub fn register(&self, host: &str, port: u16) -> Registered {
        let cut = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        let mut inner = self.lock();
        inner.0 += 1;
        let id = inner.0;
        inner.1.insert(id, Entry { host: host.to_owned(), port, cut: cut.clone(), reason: reason.clone() });
        Registered { active: self.clone(), id, cut, reason }
    }

    /// Cuts every connection for which `refuse` gives a reason; how many.
    pub fn cut(&self, refuse: impl Fn(&str, u16) -> Option<String>) -> usize {
        let inner = self.lock();
        let mut count = 0;
        for entry in inner.1.values().filter(|e| !e.cut.is_cancelled()) {
            if let Some(reason) = refuse(&entry.host, entry.port) {
                *entry.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
                entry.cut.cancel();
                count += 1;
            }
        }
        count
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().1.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One open connection's place in the registry.
pub struct Registered {
    active: Active,
    id: u64,
    cut: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Registered {
    /// Resolves when the connection is cut, with why.
    pub async fn cancelled(&self) -> String {
        self.cut.cancelled().await;
        self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or_else(|| "cut".into())
    }

    /// Why it was cut, once it was.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The token that fires when it is cut (for bodies that outlive this value's borrow).
    pub fn token(&self) -> CancellationToken {
        self.cut.clone()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.active.lock().1.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_connections_now_refused_are_cut() {
        let active = Active::default();
        let kept = active.register("github.com", 443);
        let cut = active.register("evil.example", 443);
        let refused = |host: &str, _port: u16| (host == "evil.example").then(|| "denied by \"evil.example\" (hutch deny)".to_owned());
        assert_eq!(active.cut(refused), 1);
        assert_eq!(cut.cancelled().await, "denied by \"evil.example\" (hutch deny)");
        assert!(!kept.token().is_cancelled());
        assert_eq!(active.len(), 2);
        drop(cut);
        assert_eq!(active.len(), 1);
    }
}
