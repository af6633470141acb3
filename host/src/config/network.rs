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
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::ConfigError;
use super::{Source, Sourced, expand_home};
use crate::config::pattern::HostPattern;
use crate::net::scope;

/// What the guest may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only hosts on the allow list (the default).
    Allow,
    /// Any public host; the deny list and the refusal of private addresses still apply.
    Open,
    /// As `allow`, and a request to another host waits (`ask_timeout`) for
    /// a person to answer: a `hutch run`/`exec` terminal's prompt, or `hutch
    /// allow`/`deny` while `hutch audit -f` shows it. With nobody watching on a
    /// terminal it is refused at once, as in `allow`.
    Ask,
    /// Nothing: no proxy runs, so the guest has no way out at all.
    None,
}

impl Mode {
    /// The name used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Allow => "allow",
            Mode::Open => "open",
            Mode::Ask => "ask",
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

/// How long `mode = "ask"` holds a request for an answer unless configured:
/// long enough to read a prompt and switch terminals, short enough that a
/// guest program's own timeouts (curl, npm: minutes) do not fire first.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// How long `mode = "ask"` holds a request (`60`, `"90s"`, `"2m"`).
    pub ask_timeout: Option<DurationValue>,
}

/// A duration in a configuration file: seconds, or text such as `"90s"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum DurationValue {
    /// Whole seconds.
    Seconds(u64),
    /// `30`, `1.5`, `500ms`, `2m` (see `crate::duration`).
    Text(String),
}

impl DurationValue {
    fn get(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(0) => Err("must be more than zero".into()),
            DurationValue::Seconds(secs) => Ok(Duration::from_secs(*secs)),
            DurationValue::Text(text) => crate::duration::parse(text),
        }
    }
}

/// `[secrets.NAME]` as written in one file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretTable {
    /// The host environment variable holding the real value.
    pub from_env: Option<String>,
    /// A host file holding the real value, read at each use.
    pub from_file: Option<String>,
    /// The hosts the real value is sent to (host patterns).
    pub hosts: Vec<Spanned<String>>,
    /// The HTTP methods it may be sent with (default: any).
    pub methods: Option<Vec<String>>,
    /// The path prefixes it may be sent to (default: any).
    pub paths: Option<Vec<String>>,
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretConfig {
    /// The host environment variable with the real value (this or `from_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_env: Option<String>,
    /// The host file with the real value, read at each use (so a rotated
    /// key needs no restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_file: Option<String>,
    /// Host patterns the real value may be sent to.
    pub hosts: Vec<String>,
    /// HTTP methods, in upper case, it may be sent with; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Path prefixes it may be sent to; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// `FILE:LINE` of its table.
    pub source: String,
}

impl SecretConfig {
    /// Where the real value comes from, for messages (`$VAR`, `FILE`).
    pub fn origin(&self) -> String {
        match (&self.from_env, &self.from_file) {
            (Some(var), _) => format!("${var}"),
            (None, Some(file)) => file.clone(),
            (None, None) => "nowhere".into(),
        }
    }
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
    /// How long `mode = "ask"` holds a request.
    pub ask_timeout: Sourced<Duration>,
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
            ask_timeout: Sourced::default(DEFAULT_ASK_TIMEOUT),
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
            if let Some(value) = &table.ask_timeout {
                let timeout = value.get().map_err(|e| invalid(0, format!("ask_timeout: {e}")))?;
                self.ask_timeout.set(Some(timeout), &source);
            }
            self.allow.extend(rules(table.allow)?);
            self.deny.extend(rules(table.deny)?);
        }
        for (name, table) in secrets.unwrap_or_default() {
            let offset = table.hosts.first().map_or(0, |h| h.span().start);
            if !is_variable_name(&name) {
                return Err(invalid(offset, format!("secret name {name:?} is not an environment variable name (letters, digits, _)")));
            }
            match (&table.from_env, &table.from_file) {
                (Some(var), None) if !is_variable_name(var) => {
                    return Err(invalid(offset, format!("from_env {var:?} is not an environment variable name")));
                }
                (Some(_), None) => {}
                (None, Some(file)) if file.trim().is_empty() => return Err(invalid(offset, "from_file is empty".into())),
                (None, Some(_)) => {}
                _ => {
                    return Err(invalid(
                        offset,
                        format!("secret {name} needs one source of its real value: from_env = \"VAR\" or from_file = \"PATH\""),
                    ));
                }
            }
            if table.hosts.is_empty() {
                return Err(invalid(offset, format!("secret {name} lists no hosts: name the hosts its real value may be sent to")));
            }
            let hosts = rules(Some(table.hosts))?.into_iter().map(|r| r.pattern).collect();
            let methods = table
                .methods
                .unwrap_or_default()
                .iter()
                .map(|m| scope::method(m).map_err(|e| invalid(offset, format!("secret {name}: {e}"))))
                .collect::<Result<_, _>>()?;
            let paths = table
                .paths
                .unwrap_or_default()
                .iter()
                .map(|p| scope::path_prefix(p).map_err(|e| invalid(offset, format!("secret {name}: {e}"))))
                .collect::<Result<_, _>>()?;
            // Relative to the file that names it, as a person reading it would take it.
            let from_file = table.from_file.map(|f| {
                let file = expand_home(f.trim());
                path.parent().map_or_else(|| file.clone(), |dir| dir.join(&file)).display().to_string()
            });
            let source = format!("{}:{}", path.display(), line(offset));
            self.secrets.insert(name, SecretConfig { from_env: table.from_env, from_file, hosts, methods, paths, source });
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
