//! The egress policy of one VM: written by `hutch up` from the configuration
//! in force (the VM's `net/policy.json`), changed while it runs by `hutch
//! allow`/`deny` (see [`super::live`]), applied by its network process to
//! every request by host name and port.
//!
//! Deny rules win over everything; then `mode = "open"` allows any host,
//! `mode = "allow"` the hosts of the allow list, and `mode = "ask"` asks a
//! person about the others. Every verdict names the rule behind it, and every
//! refusal says which configuration line would allow the request, so a guest
//! program's error message tells the user what to do.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NetError;
use crate::config::network::{Mode, NetworkConfig, Rule, SecretConfig};
use crate::config::pattern::{DEFAULT_PORTS, HostPattern};

/// The policy file's name in the VM's `net/` folder.
pub const POLICY_FILE: &str = "policy.json";

/// The reason of a refusal no rule asked for: the 403 that says which line to add.
pub const NOT_LISTED: &str = "not on the allow list";

/// What `hutch up` hands the network process: the configuration in force
/// (live changes are kept apart, see [`super::live`]). No secret values:
/// only where they come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// allow, open or none.
    pub mode: Mode,
    /// Where the mode was set.
    pub mode_source: String,
    /// Allowed host patterns.
    pub allow: Vec<Rule>,
    /// Denied host patterns.
    pub deny: Vec<Rule>,
    /// Whether the guest trusts the host's CAs.
    pub trust_host_cas: bool,
    /// The proxy's port on the guest's loopback.
    pub guest_port: u16,
    /// Secrets by the variable the guest sees.
    pub secrets: BTreeMap<String, SecretConfig>,
    /// The file a refusal tells the user to add an `allow` entry to.
    pub advice_file: String,
    /// How long `mode = "ask"` holds a request, in milliseconds.
    #[serde(default = "default_ask_timeout_ms")]
    pub ask_timeout_ms: u64,
}

fn default_ask_timeout_ms() -> u64 {
    crate::config::network::DEFAULT_ASK_TIMEOUT.as_millis() as u64
}

impl PolicyFile {
    /// An `allow` policy with `allow` as its list and nothing else, as the
    /// unit tests of the network's modules start from.
    #[cfg(test)]
    pub(crate) fn for_tests(allow: Vec<crate::config::network::Rule>) -> PolicyFile {
        PolicyFile {
            mode: Mode::Allow,
            mode_source: "default".into(),
            allow,
            deny: Vec::new(),
            trust_host_cas: true,
            guest_port: 3128,
            secrets: Default::default(),
            advice_file: "hutch.toml".into(),
            ask_timeout_ms: 60_000,
        }
    }

    /// The policy for a VM whose project is `project` (for the advice).
    pub fn new(config: &NetworkConfig, project: Option<&Path>) -> PolicyFile {
        let advice_file = crate::config::project_file(project.unwrap_or(Path::new("/")))
            .or_else(|| project.map(|p| p.join(crate::config::PROJECT_FILE)))
            .or_else(crate::config::user_file)
            .map_or_else(|| crate::config::PROJECT_FILE.to_owned(), |p| p.display().to_string());
        PolicyFile {
            mode: config.mode.value,
            mode_source: config.mode.source.to_string(),
            allow: config.allow.clone(),
            deny: config.deny.clone(),
            trust_host_cas: config.trust_host_cas.value,
            guest_port: config.guest_port.value,
            secrets: config.secrets.clone(),
            advice_file,
            ask_timeout_ms: u64::try_from(config.ask_timeout.value.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Whether `other` differs from this policy only in what the running
    /// network process can change in place (rules, mode, the advice file,
    /// the ask timeout, the secrets' scopes): anything else (the guest port,
    /// the CAs the guest trusts, which secrets exist) needs a new process.
    pub fn changes_in_place(&self, other: &PolicyFile) -> bool {
        let same_names = self.secrets.keys().eq(other.secrets.keys());
        self.guest_port == other.guest_port && self.trust_host_cas == other.trust_host_cas && same_names
    }

    /// The one-host `tcp://` rules of the allow list: the routes the guest gets.
    pub fn tcp_rules(&self) -> Vec<(String, u16, Rule)> {
        self.allow.iter().filter_map(|r| r.parsed().ok()?.tcp_target().map(|(host, port)| (host, port, r.clone()))).collect()
    }

    /// Reads the policy in `net_dir`.
    pub fn load(net_dir: &Path) -> Result<PolicyFile, NetError> {
        let path = net_dir.join(POLICY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| NetError::io(format!("reading {}", path.display()), e))?;
        serde_json::from_str(&text).map_err(|e| NetError::BadState { path, source: e })
    }
}

/// A request's fate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by `rule`; `explicit` when the rule names this very host, which
    /// is what it takes to reach loopback, private or link-local addresses.
    Allow {
        /// The rule, for the audit log (`"github.com" (built-in)`).
        rule: String,
        /// The rule names the host itself.
        explicit: bool,
    },
    /// Refused.
    Deny {
        /// Why, for the audit log and the 403.
        reason: String,
    },
    /// No rule says (`mode = "ask"`): a person is to decide.
    Ask,
}

/// A compiled policy.
#[derive(Clone, Debug)]
pub struct Policy {
    mode: Mode,
    mode_source: String,
    allow: Vec<(HostPattern, Rule)>,
    deny: Vec<(HostPattern, Rule)>,
    advice_file: String,
}

impl Policy {
    /// Compiles `file`'s rules.
    pub fn new(file: &PolicyFile) -> Result<Policy, NetError> {
        let compile = |rules: &[Rule]| -> Result<Vec<(HostPattern, Rule)>, NetError> {
            rules.iter().map(|r| r.parsed().map(|p| (p, r.clone())).map_err(NetError::Policy)).collect()
        };
        Ok(Policy {
            mode: file.mode,
            mode_source: file.mode_source.clone(),
            allow: compile(&file.allow)?,
            deny: compile(&file.deny)?,
            advice_file: file.advice_file.clone(),
        })
    }

    /// The verdict for `host` (normalized, see `pattern::normalize_host`) on `port`.
    pub fn decide(&self, host: &str, port: u16) -> Verdict {
        if let Some((_, rule)) = self.deny.iter().find(|(p, _)| p.matches(host, port)) {
            return Verdict::Deny { reason: format!("denied by {:?} ({})", rule.pattern, rule.source) };
        }
        // A rule that names the host wins over a wildcard, so a private
        // address can be allowed explicitly beside `*.` rules.
        let mut matching = self.allow.iter().filter(|(p, _)| p.matches(host, port));
        let first = matching.next();
        let explicit = first.iter().copied().chain(matching).find(|(p, _)| p.is_explicit());
        match (self.mode, explicit.or(first)) {
            (_, Some((pattern, rule))) => {
                Verdict::Allow { rule: format!("{:?} ({})", rule.pattern, rule.source), explicit: pattern.is_explicit() }
            }
            (Mode::Open, None) => Verdict::Allow { rule: format!("mode \"open\" ({})", self.mode_source), explicit: false },
            (Mode::Ask, None) => Verdict::Ask,
            (Mode::Allow | Mode::None, None) => Verdict::Deny { reason: NOT_LISTED.into() },
        }
    }

    /// The pattern that allows exactly `host` on `port`, as a user would add it.
    pub fn suggestion(host: &str, port: u16) -> String {
        let shown = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        if DEFAULT_PORTS.contains(&port) { shown } else { format!("{shown}:{port}") }
    }

    /// The same in one line, for an HTTP status line (which is what most
    /// clients print when a CONNECT is refused).
    pub fn short_advice(&self, host: &str, port: u16, reason: &str) -> String {
        if reason.starts_with("denied") {
            format!("{host}:{port}: {reason}")
        } else {
            let pattern = Policy::suggestion(host, port);
            format!("{host}:{port}: {reason}; to allow it add allow = [\"{pattern}\"] under [network] in {}", self.advice_file)
        }
    }

    /// What a refused guest program shows its user: what was refused, why,
    /// and the configuration line that would allow it.
    pub fn advice(&self, host: &str, port: u16, reason: &str) -> String {
        let pattern = Policy::suggestion(host, port);
        let mut text = format!("hutch: the VM may not reach {host}:{port}: {reason}.\n");
        if reason.starts_with("denied") {
            text.push_str(&format!("To allow it while the VM runs: `hutch allow {pattern}` (`--save` also removes the `deny` entry).\n"));
        } else {
            text.push_str(&format!(
                "To allow it, add it to the allow list in {}:\n\n[network]\nallow = [\"{pattern}\"]\n\nor, while the VM runs, `hutch allow {pattern}` (`--save` writes that line for you).\n",
                self.advice_file
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, source: &str) -> Rule {
        Rule { pattern: pattern.into(), source: source.into() }
    }

    fn policy(mode: Mode, allow: &[&str], deny: &[&str]) -> Policy {
        let file = PolicyFile {
            mode,
            mode_source: "hutch.toml:2".into(),
            allow: allow.iter().map(|p| rule(p, "hutch.toml:3")).collect(),
            deny: deny.iter().map(|p| rule(p, "hutch.toml:4")).collect(),
            trust_host_cas: true,
            guest_port: 3128,
            secrets: BTreeMap::new(),
            advice_file: "/p/hutch.toml".into(),
            ask_timeout_ms: 60_000,
        };
        Policy::new(&file).unwrap()
    }

    #[test]
    fn deny_wins_then_the_allow_list_or_open_mode() {
        let p = policy(Mode::Allow, &["*.example.com", "api.example.com", "localhost:8080"], &["evil.example.com"]);
        assert_eq!(p.decide("api.example.com", 443), Verdict::Allow { rule: "\"api.example.com\" (hutch.toml:3)".into(), explicit: true });
        assert_eq!(p.decide("www.example.com", 443), Verdict::Allow { rule: "\"*.example.com\" (hutch.toml:3)".into(), explicit: false });
        assert!(
            matches!(p.decide("evil.example.com", 443), Verdict::Deny { reason } if reason.contains("denied by \"evil.example.com\" (hutch.toml:4)"))
        );
        assert!(matches!(p.decide("other.org", 443), Verdict::Deny { reason } if reason == "not on the allow list"));
        assert!(matches!(p.decide("localhost", 8080), Verdict::Allow { explicit: true, .. }));
        assert!(matches!(p.decide("localhost", 443), Verdict::Deny { .. }));

        assert_eq!(policy(Mode::Ask, &["github.com"], &["evil.example.com"]).decide("other.org", 443), Verdict::Ask);
        assert!(matches!(policy(Mode::Ask, &[], &["evil.example.com"]).decide("evil.example.com", 443), Verdict::Deny { .. }));

        let open = policy(Mode::Open, &[], &["evil.example.com"]);
        assert_eq!(open.decide("other.org", 443), Verdict::Allow { rule: "mode \"open\" (hutch.toml:2)".into(), explicit: false });
        assert!(matches!(open.decide("evil.example.com", 443), Verdict::Deny { .. }));
    }

    #[test]
    fn advice_names_the_file_and_the_line_to_add() {
        let p = policy(Mode::Allow, &[], &[]);
        let text = p.advice("registry.npmjs.org", 443, "not on the allow list");
        assert!(text.contains("may not reach registry.npmjs.org:443: not on the allow list"), "{text}");
        assert!(text.contains("/p/hutch.toml:\n\n[network]\nallow = [\"registry.npmjs.org\"]"), "{text}");
        assert!(p.advice("::1", 3000, "x").contains("allow = [\"[::1]:3000\"]"));
    }
}
