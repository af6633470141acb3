//! The policy a network process serves, and changes to it while it runs.
//!
//! It is the configuration's policy (`net/policy.json`, replaced by `hutch
//! up` after an edit) with the live changes of `hutch allow`/`deny`
//! (`net/live.json`, see [`super::live`]) on top. Every request reads the
//! compiled policy in force when it starts; a change swaps it for the next
//! ones, and publishes the `tcp://` routes it implies, which the agent is
//! asked to listen for (see `daemon`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::watch;

use super::NetError;
use super::live::LiveEdits;
use super::policy::{Policy, PolicyFile};
use super::route::{self, Route};

/// The served policy of one network process.
pub struct Served {
    net_dir: PathBuf,
    state: Mutex<(PolicyFile, LiveEdits)>,
    compiled: RwLock<(Arc<PolicyFile>, Arc<Policy>)>,
    routes: watch::Sender<Vec<Route>>,
}

impl Served {
    /// The policy kept in `net_dir`, with its live changes.
    pub fn load(net_dir: &Path) -> Result<Served, NetError> {
        Served::new(net_dir, PolicyFile::load(net_dir)?, LiveEdits::load(net_dir)?)
    }

    /// `base` with `edits`, kept in `net_dir`.
    pub fn new(net_dir: &Path, base: PolicyFile, edits: LiveEdits) -> Result<Served, NetError> {
        let (file, policy, routes) = compile(net_dir, &base, &edits)?;
        Ok(Served {
            net_dir: net_dir.to_path_buf(),
            state: Mutex::new((base, edits)),
            compiled: RwLock::new((Arc::new(file), Arc::new(policy))),
            routes: watch::Sender::new(routes),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (PolicyFile, LiveEdits)> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The compiled policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.compiled.read().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }

    /// The policy in force, as a file (rules with their sources).
    pub fn file(&self) -> Arc<PolicyFile> {
        self.compiled.read().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone()
    }

    /// The routes in force, and their changes.
    pub fn routes(&self) -> watch::Receiver<Vec<Route>> {
        self.routes.subscribe()
    }

    /// Changes the live edits with `change` (given the configuration's
    /// policy); kept and in force once this returns. Nothing changes when
    /// the result does not compile.
    pub fn edit<R>(&self, change: impl FnOnce(&PolicyFile, &mut LiveEdits) -> R) -> Result<R, NetError> {
        let mut state = self.lock();
        let mut edits = state.1.clone();
        let result = change(&state.0, &mut edits);
        self.install(&state.0, &edits)?;
        edits.save(&self.net_dir)?;
        state.1 = edits;
        Ok(result)
    }

    /// Serves `base` as the configuration's policy from now on (`hutch up`
    /// read the configuration again), with the live edits still on top.
    pub fn rebase(&self, base: PolicyFile) -> Result<(), NetError> {
        let mut state = self.lock();
        let mut edits = state.1.clone();
        edits.forget_saved(&base);
        self.install(&base, &edits)?;
        if edits != state.1 {
            edits.save(&self.net_dir)?;
        }
        *state = (base, edits);
        Ok(())
    }

    fn install(&self, base: &PolicyFile, edits: &LiveEdits) -> Result<(), NetError> {
        let (file, policy, routes) = compile(&self.net_dir, base, edits)?;
        *self.compiled.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (Arc::new(file), Arc::new(policy));
        self.routes.send_if_modified(|old| {
            let changed = *old != routes;
            *old = routes;
            changed
        });
        Ok(())
    }
}

fn compile(net_dir: &Path, base: &PolicyFile, edits: &LiveEdits) -> Result<(PolicyFile, Policy, Vec<Route>), NetError> {
    let file = edits.apply(base);
    let policy = Policy::new(&file)?;
    let routes = route::routes(net_dir, &file)?;
    Ok((file, policy, routes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::network::{Mode, Rule};
    use crate::net::policy::Verdict;

    #[test]
    fn edits_take_effect_at_once_are_kept_and_survive_a_new_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut base = PolicyFile::for_tests(Vec::new());
        let served = Served::new(dir.path(), base.clone(), LiveEdits::default()).unwrap();
        assert!(matches!(served.policy().decide("example.com", 443), Verdict::Deny { .. }));
        let mut routes = served.routes();
        served.edit(|base, edits| edits.allow(base, Rule { pattern: "example.com".into(), source: "hutch allow".into() })).unwrap();
        served
            .edit(|base, edits| edits.allow(base, Rule { pattern: "tcp://db.internal:5432".into(), source: "hutch allow".into() }))
            .unwrap();
        assert!(matches!(served.policy().decide("example.com", 443), Verdict::Allow { .. }));
        assert!(routes.has_changed().unwrap());
        assert_eq!(routes.borrow_and_update()[0].guest.to_string(), "127.77.0.1:5432");

        // A bad rule changes nothing.
        let bad = served.edit(|base, edits| edits.allow(base, Rule { pattern: "*".into(), source: "x".into() }));
        assert!(bad.is_err());
        assert!(matches!(served.policy().decide("example.com", 443), Verdict::Allow { .. }));

        // Kept: a new process serves them too; a new configuration keeps them.
        let again = Served::new(dir.path(), base.clone(), LiveEdits::load(dir.path()).unwrap()).unwrap();
        assert!(matches!(again.policy().decide("example.com", 443), Verdict::Allow { .. }));
        base.mode = Mode::Open;
        again.rebase(base).unwrap();
        assert!(matches!(again.policy().decide("example.com", 443), Verdict::Allow { rule, .. } if rule.contains("hutch allow")));
        assert!(matches!(again.policy().decide("other.org", 443), Verdict::Allow { rule, .. } if rule.contains("open")));
    }
}
