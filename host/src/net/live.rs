//! Changes made to a running VM's policy by `hutch allow` and `hutch deny`
//! (and by answers to `mode = "ask"` questions), kept apart from the
//! configuration's policy so both can change: `hutch up` after an edit of
//! `hutch.toml` replaces the configuration's part and keeps these.
//!
//! They last as long as the VM runs (a fresh start of the VM forgets them;
//! `hutch reset` keeps them, as it keeps the rest of the VM's network), in
//! `net/live.json` so a network process started again serves them too.
//! `--save` writes a rule into `hutch.toml` as well, where it outlives the VM.
//!
//! `allow P` adds an allow rule and lifts every deny rule written exactly `P`
//! (from any layer); `deny P` adds a deny rule and removes every allow rule
//! written exactly `P`. Deny rules still win, so an allow that a broader deny
//! rule (`*.example.com`) still covers is reported, not silently useless.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NetError;
use super::policy::PolicyFile;
use crate::config::network::Rule;

/// The file in the VM's `net/` folder.
pub const LIVE_FILE: &str = "live.json";

/// What one `allow` or `deny` did besides adding its rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// Rules of the other list, written the same way, that no longer apply.
    pub undone: Vec<Rule>,
    /// The configuration's own rule that already says so (then none is added).
    pub already: Option<Rule>,
}

/// What was changed while the VM ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEdits {
    /// Allow rules added.
    #[serde(default)]
    pub allow: Vec<Rule>,
    /// Deny rules added.
    #[serde(default)]
    pub deny: Vec<Rule>,
    /// Patterns taken off the configuration's allow list.
    #[serde(default)]
    pub unallowed: Vec<String>,
    /// Patterns taken off the configuration's deny list.
    #[serde(default)]
    pub undenied: Vec<String>,
}

impl LiveEdits {
    /// The edits kept in `net_dir` (none when there is no file).
    pub fn load(net_dir: &Path) -> Result<LiveEdits, NetError> {
        let path = net_dir.join(LIVE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| NetError::BadState { path, source: e }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LiveEdits::default()),
            Err(e) => Err(NetError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Keeps them in `net_dir`.
    pub fn save(&self, net_dir: &Path) -> Result<(), NetError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| NetError::Policy(e.to_string()))?;
        super::write_private(&net_dir.join(LIVE_FILE), text.as_bytes())
    }

    /// Forgets every change (a fresh start of the VM).
    pub fn clear(net_dir: &Path) {
        let _ = std::fs::remove_file(net_dir.join(LIVE_FILE));
    }

    /// Whether nothing was changed.
    pub fn is_empty(&self) -> bool {
        self == &LiveEdits::default()
    }

    /// Allows `rule`'s pattern; the rules of the deny list written the
    /// same way are lifted.
    pub fn allow(&mut self, base: &PolicyFile, rule: Rule) -> Edit {
        let pattern = rule.pattern.clone();
        let mut edit = Edit::default();
        edit.undone.extend(base.deny.iter().filter(|r| r.pattern == pattern && !self.undenied.contains(&pattern)).cloned());
        edit.undone.extend(self.deny.iter().filter(|r| r.pattern == pattern).cloned());
        self.deny.retain(|r| r.pattern != pattern);
        if base.deny.iter().any(|r| r.pattern == pattern) && !self.undenied.contains(&pattern) {
            self.undenied.push(pattern.clone());
        }
        self.allow.retain(|r| r.pattern != pattern);
        self.unallowed.retain(|p| *p != pattern);
        match base.allow.iter().find(|r| r.pattern == pattern) {
            Some(kept) => edit.already = Some(kept.clone()),
            None => self.allow.push(rule),
        }
        edit
    }

    /// Denies `rule`'s pattern; the rules of the allow list written the
    /// same way are removed.
    pub fn deny(&mut self, base: &PolicyFile, rule: Rule) -> Edit {
        let pattern = rule.pattern.clone();
        let mut edit = Edit::default();
        edit.undone.extend(base.allow.iter().filter(|r| r.pattern == pattern && !self.unallowed.contains(&pattern)).cloned());
        edit.undone.extend(self.allow.iter().filter(|r| r.pattern == pattern).cloned());
        self.allow.retain(|r| r.pattern != pattern);
        if base.allow.iter().any(|r| r.pattern == pattern) && !self.unallowed.contains(&pattern) {
            self.unallowed.push(pattern.clone());
        }
        self.deny.retain(|r| r.pattern != pattern);
        self.undenied.retain(|p| *p != pattern);
        match base.deny.iter().find(|r| r.pattern == pattern) {
            Some(kept) => edit.already = Some(kept.clone()),
            None => self.deny.push(rule),
        }
        edit
    }

    /// Drops added rules that `base` now has from the same place (a rule
    /// saved with `--save`, once `hutch up` has read the file again).
    pub fn forget_saved(&mut self, base: &PolicyFile) {
        self.allow.retain(|r| !base.allow.contains(r));
        self.deny.retain(|r| !base.deny.contains(r));
    }

    /// The policy in force: `base` with these changes.
    pub fn apply(&self, base: &PolicyFile) -> PolicyFile {
        let mut policy = base.clone();
        policy.allow.retain(|r| !self.unallowed.contains(&r.pattern));
        policy.deny.retain(|r| !self.undenied.contains(&r.pattern));
        policy.allow.extend(self.allow.iter().cloned());
        policy.deny.extend(self.deny.iter().cloned());
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, source: &str) -> Rule {
        Rule { pattern: pattern.into(), source: source.into() }
    }

    fn base() -> PolicyFile {
        PolicyFile {
            deny: vec![rule("gist.github.com", "hutch.toml:4")],
            ..PolicyFile::for_tests(vec![rule("github.com", "built-in"), rule("pypi.org", "hutch.toml:3")])
        }
    }

    fn patterns(rules: &[Rule]) -> Vec<&str> {
        rules.iter().map(|r| r.pattern.as_str()).collect()
    }

    #[test]
    fn allow_lifts_the_same_deny_rule_and_deny_removes_the_same_allow_rule() {
        let base = base();
        let mut edits = LiveEdits::default();
        let edit = edits.allow(&base, rule("gist.github.com", "hutch allow"));
        assert_eq!(edit, Edit { undone: vec![rule("gist.github.com", "hutch.toml:4")], already: None });
        let policy = edits.apply(&base);
        assert_eq!(patterns(&policy.allow), ["github.com", "pypi.org", "gist.github.com"]);
        assert!(policy.deny.is_empty());

        let edit = edits.deny(&base, rule("pypi.org", "hutch deny"));
        assert_eq!(edit.undone, [rule("pypi.org", "hutch.toml:3")]);
        // Denied again: the configuration's own deny rule is back, no copy added.
        let edit = edits.deny(&base, rule("gist.github.com", "hutch deny"));
        assert_eq!(
            edit,
            Edit { undone: vec![rule("gist.github.com", "hutch allow")], already: Some(rule("gist.github.com", "hutch.toml:4")) }
        );
        let policy = edits.apply(&base);
        assert_eq!(patterns(&policy.allow), ["github.com"]);
        assert_eq!(policy.deny, [rule("gist.github.com", "hutch.toml:4"), rule("pypi.org", "hutch deny")]);

        // Allowed again: the configuration's own allow rule is back, the added deny goes.
        let edit = edits.allow(&base, rule("pypi.org", "hutch allow"));
        assert_eq!(edit, Edit { undone: vec![rule("pypi.org", "hutch deny")], already: Some(rule("pypi.org", "hutch.toml:3")) });
        let policy = edits.apply(&base);
        assert_eq!(policy.allow, [rule("github.com", "built-in"), rule("pypi.org", "hutch.toml:3")]);
        assert_eq!(patterns(&policy.deny), ["gist.github.com"]);
    }

    #[test]
    fn saved_rules_are_forgotten_once_the_configuration_has_them_and_edits_survive_a_restart() {
        let mut base = base();
        let mut edits = LiveEdits::default();
        edits.allow(&base, rule("npmjs.org", "/p/hutch.toml:5"));
        edits.allow(&base, rule("example.com", "hutch allow"));
        base.allow.push(rule("npmjs.org", "/p/hutch.toml:5"));
        edits.forget_saved(&base);
        assert_eq!(patterns(&edits.allow), ["example.com"]);

        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LiveEdits::load(dir.path()).unwrap(), LiveEdits::default());
        edits.save(dir.path()).unwrap();
        assert_eq!(LiveEdits::load(dir.path()).unwrap(), edits);
        LiveEdits::clear(dir.path());
        assert!(LiveEdits::load(dir.path()).unwrap().is_empty());
    }
}
