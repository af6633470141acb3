//! The `[network]` and `[secrets.NAME]` tables: what a VM's guest may reach
//! through hutch's proxy, and which host secrets the proxy adds to requests
//! (see `crate::net`).
//!
//! Unlike the other keys, `allow` and `deny` lists add up across layers —
//! hutch's built-in list, then the user's file, the project's and `--allow`
//! flags — and every entry remembers the file and line it came from, which
//! the audit log names as the rule behind each decision. Secrets merge by
//! name; a later layer's definition of a name replaces an earlier one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ConfigError, Source, Sourced};
use crate::net::pattern::HostPattern;

/// What the guest may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only hosts on the allow list (the default).
    Allow,
    /// Any public host; the deny list and the refusal of private addresses still apply.
    Open,
    /// Nothing: no proxy runs, so the guest has no way out at all.
    None,
}

impl Mode {
    /// The name used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Allow => "allow",
            Mode::Open => "open",
            Mode::None => "none",
        }
    }
}

/// Hosts allowed unless the configuration says otherwise: the coding agents'
/// APIs and sign-in, and git hosting. Package registries are the user's to add.
pub const DEFAULT_ALLOW: &[&str] = &[
    "api.anthropic.com",
    "statsig.anthropic.com",
    "console.anthropic.com",
    "claude.ai",
    "api.openai.com",
    "auth.openai.com",
    "chatgpt.com",
    "generativelanguage.googleapis.com",
    "github.com",
    "api.github.com",
    "codeload.github.com",
    "*.githubusercontent.com",
    "gitlab.com",
    "bitbucket.org",
];

/// The guest loopback port of the proxy unless configured: squid's, which
/// tools and people recognise as a proxy's.
pub const DEFAULT_GUEST_PORT: u16 = 3128;

/// `[network]` as written in one file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkTable {
    /// `allow`, `open` or `none`.
    pub mode: Option<Mode>,
    /// Host patterns added to the allow list.
    pub allow: Option<Vec<Spanned<String>>>,
    /// Host patterns refused in every mode.
    pub deny: Option<Vec<Spanned<String>>>,
    /// Whether the guest trusts the host's CAs too (default true).
    pub trust_host_cas: Option<bool>,
    /// The proxy's port on the guest's loopback (default 3128).
    pub guest_port: Option<u16>,
}

/// `[secrets.NAME]` as written in one file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretTable {
    /// The host environment variable holding the real value.
    pub from_env: String,
    /// The hosts the real value is sent to (host patterns).
    pub hosts: Vec<Spanned<String>>,
}

/// One allow or deny entry and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The pattern as written (normalized).
    pub pattern: String,
    /// `built-in`, `FILE:LINE` or `--allow`.
    pub source: String,
}

impl Rule {
    /// The parsed pattern (rules are checked when read, so this holds).
    pub fn parsed(&self) -> Result<HostPattern, String> {
        self.pattern.parse()
    }
}

/// A secret the proxy adds to requests for its hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretConfig {
    /// The host environment variable with the real value.
    pub from_env: String,
    /// Host patterns the real value may be sent to.
    pub hosts: Vec<String>,
    /// `FILE:LINE` of its table.
    pub source: String,
}

/// The network configuration in force.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// The mode.
    pub mode: Sourced<Mode>,
    /// The allow list, built-in entries first.
    pub allow: Vec<Rule>,
    /// The deny list.
    pub deny: Vec<Rule>,
    /// Whether the guest trusts the host's CAs.
    pub trust_host_cas: Sourced<bool>,
    /// The proxy's guest port.
    pub guest_port: Sourced<u16>,
    /// Secrets by the name of the variable the guest sees.
    pub secrets: BTreeMap<String, SecretConfig>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            mode: Sourced::default(Mode::Allow),
            allow: DEFAULT_ALLOW.iter().map(|p| Rule { pattern: (*p).to_owned(), source: "built-in".into() }).collect(),
            deny: Vec::new(),
            trust_host_cas: Sourced::default(true),
            guest_port: Sourced::default(DEFAULT_GUEST_PORT),
            secrets: BTreeMap::new(),
        }
    }
}

impl NetworkConfig {
    /// Adds one file's tables; `line` turns a byte offset of that file into its line.
    pub(super) fn layer(
        &mut self,
        network: Option<NetworkTable>,
        secrets: Option<BTreeMap<String, SecretTable>>,
        path: &Path,
        line: &dyn Fn(usize) -> usize,
    ) -> Result<(), ConfigError> {
        let source = Source::File(path.to_path_buf());
        let invalid = |offset: usize, message: String| ConfigError::Invalid { path: path.to_path_buf(), line: line(offset), message };
        let rules = |entries: Option<Vec<Spanned<String>>>| -> Result<Vec<Rule>, ConfigError> {
            let mut rules = Vec::new();
            for entry in entries.unwrap_or_default() {
                let offset = entry.span().start;
                let pattern: HostPattern = entry.get_ref().parse().map_err(|e| invalid(offset, e))?;
                rules.push(Rule { pattern: pattern.to_string(), source: format!("{}:{}", path.display(), line(offset)) });
            }
            Ok(rules)
        };
        if let Some(table) = network {
            self.mode.set(table.mode, &source);
            self.trust_host_cas.set(table.trust_host_cas, &source);
            if table.guest_port == Some(0) {
                return Err(invalid(0, "guest_port must be in 1..=65535".into()));
            }
            self.guest_port.set(table.guest_port, &source);
            self.allow.extend(rules(table.allow)?);
            self.deny.extend(rules(table.deny)?);
        }
        for (name, table) in secrets.unwrap_or_default() {
            let offset = table.hosts.first().map_or(0, |h| h.span().start);
            if !is_variable_name(&name) {
                return Err(invalid(offset, format!("secret name {name:?} is not an environment variable name (letters, digits, _)")));
            }
            if !is_variable_name(&table.from_env) {
                return Err(invalid(offset, format!("from_env {:?} is not an environment variable name", table.from_env)));
            }
            if table.hosts.is_empty() {
                return Err(invalid(offset, format!("secret {name} lists no hosts: name the hosts its real value may be sent to")));
            }
            let hosts = rules(Some(table.hosts))?.into_iter().map(|r| r.pattern).collect();
            let source = format!("{}:{}", path.display(), line(offset));
            self.secrets.insert(name, SecretConfig { from_env: table.from_env, hosts, source });
        }
        Ok(())
    }

    /// Adds `--allow` patterns from the command line.
    pub fn allow_flags(&mut self, patterns: &[HostPattern]) {
        self.allow.extend(patterns.iter().map(|p| Rule { pattern: p.to_string(), source: "--allow".into() }));
    }
}

/// Whether `name` can be an environment variable's name.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
