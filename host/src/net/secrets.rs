//! Secrets that never enter the guest.
//!
//! For each `[secrets.NAME]` the guest sees, in variable NAME, a placeholder:
//! random per VM (kept in `net/placeholders.json` so it survives restarts of
//! the network process), worthless anywhere but in hutch's proxy. The real
//! value is read from the host's environment by the network process when it
//! starts, and exists nowhere else: not in the guest, not in a file, not in
//! the audit log. For the secret's hosts, the proxy terminates TLS and swaps
//! the placeholder for the real value in request headers and the URL
//! (inside `Basic` credentials too, which is how git sends a token); the
//! placeholder sent to any other host the proxy sees is refused and logged.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;

use super::NetError;
use super::pattern::HostPattern;
use super::policy::PolicyFile;

/// The placeholders' file in the VM's `net/` folder.
pub const PLACEHOLDERS_FILE: &str = "placeholders.json";

/// One secret as the network process holds it.
#[derive(Clone)]
pub struct Secret {
    /// The variable the guest sees.
    pub name: String,
    /// The host variable holding the real value.
    pub from_env: String,
    /// Hosts the real value is sent to.
    pub hosts: Vec<HostPattern>,
    /// What the guest sees instead.
    pub placeholder: String,
    /// The real value, when the host's environment had it.
    value: Option<String>,
}

impl std::fmt::Debug for Secret {
    /// Never shows the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("name", &self.name).field("placeholder", &self.placeholder).finish_non_exhaustive()
    }
}

impl Secret {
    /// Whether the host's environment had a value for it.
    pub fn has_value(&self) -> bool {
        self.value.is_some()
    }

    /// SHA-256 of the placeholder and the value, in hex: changes when the
    /// value does, and tells nothing about it (the placeholder salts it).
    pub fn fingerprint(&self) -> String {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(self.placeholder.as_bytes());
        context.update(&[0]);
        context.update(self.value.as_deref().unwrap_or_default().as_bytes());
        context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the real value may be sent to `host`.
    pub fn allowed_for(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.matches_host(host))
    }
}

/// Why a request may not carry what it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// The placeholder of `name` went to a host not among its hosts.
    WrongHost {
        /// The secret.
        name: String,
    },
    /// The placeholder of `name` went to one of its hosts without TLS.
    Plaintext {
        /// The secret.
        name: String,
    },
    /// The host's environment had no value for the secret.
    NoValue {
        /// The secret.
        name: String,
        /// The host variable that was empty.
        from_env: String,
    },
}

impl Misuse {
    /// For the audit log and the 403 body.
    pub fn reason(&self, host: &str) -> String {
        match self {
            Misuse::WrongHost { name } => format!("the placeholder of secret {name} was sent to {host}, which is not among its hosts"),
            Misuse::Plaintext { name } => {
                format!("the placeholder of secret {name} was sent to {host} without TLS; hutch sends real values over https only")
            }
            Misuse::NoValue { name, from_env } => {
                format!(
                    "secret {name} has no value: ${from_env} was not set when the VM's network started (set it, then `hutch down` and `hutch up`)"
                )
            }
        }
    }
}

/// Every secret of one VM.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    list: Vec<Secret>,
}

impl Secrets {
    /// The secrets of `policy`, with their placeholders (made and saved in
    /// `net_dir` on first use) and their real values from `lookup`.
    pub fn load(net_dir: &Path, policy: &PolicyFile, lookup: impl Fn(&str) -> Option<String>) -> Result<Secrets, NetError> {
        let placeholders = placeholders(net_dir, policy.secrets.keys())?;
        let mut list = Vec::new();
        for (name, config) in &policy.secrets {
            let hosts = config.hosts.iter().map(|h| h.parse().map_err(NetError::Policy)).collect::<Result<_, _>>()?;
            let placeholder = placeholders.get(name).cloned().ok_or_else(|| NetError::Policy(format!("no placeholder for {name}")))?;
            let value = lookup(&config.from_env).filter(|v| !v.is_empty());
            list.push(Secret { name: name.clone(), from_env: config.from_env.clone(), hosts, placeholder, value });
        }
        Ok(Secrets { list })
    }

    /// Every secret.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.list.iter()
    }

    /// Whether requests to `host` have secrets to add (so its TLS is intercepted).
    pub fn intercepts(&self, host: &str) -> bool {
        self.list.iter().any(|s| s.allowed_for(host))
    }

    /// The variables the guest gets: each secret's name and placeholder.
    pub fn guest_env(&self) -> BTreeMap<String, String> {
        self.list.iter().map(|s| (s.name.clone(), s.placeholder.clone())).collect()
    }

    /// The first secret whose placeholder `text` carries (also inside
    /// `Basic` credentials), if any.
    pub fn find(&self, text: &str) -> Option<&Secret> {
        let decoded = basic_credentials(text);
        self.list.iter().find(|s| text.contains(&s.placeholder) || decoded.as_deref().is_some_and(|d| d.contains(&s.placeholder)))
    }

    /// `text` (a header value or a URL of a request to `host` over TLS) with
    /// the placeholders of `host`'s secrets replaced by their real values,
    /// and the names of those secrets; or why the request must be refused.
    pub fn rewrite(&self, host: &str, text: &str) -> Result<(String, Vec<String>), Misuse> {
        if self.find(text).is_none() {
            return Ok((text.to_owned(), Vec::new()));
        }
        let mut injected = Vec::new();
        let swap = |mut text: String, injected: &mut Vec<String>| -> Result<String, Misuse> {
            for secret in &self.list {
                if !text.contains(&secret.placeholder) {
                    continue;
                }
                if !secret.allowed_for(host) {
                    return Err(Misuse::WrongHost { name: secret.name.clone() });
                }
                let Some(value) = &secret.value else {
                    return Err(Misuse::NoValue { name: secret.name.clone(), from_env: secret.from_env.clone() });
                };
                text = text.replace(&secret.placeholder, value);
                if !injected.contains(&secret.name) {
                    injected.push(secret.name.clone());
                }
            }
            Ok(text)
        };
        let out = match basic_credentials(text) {
            Some(decoded) if self.list.iter().any(|s| decoded.contains(&s.placeholder)) => {
                let swapped = swap(decoded, &mut injected)?;
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(swapped))
            }
            _ => swap(text.to_owned(), &mut injected)?,
        };
        Ok((out, injected))
    }

    /// `text` with every real value replaced by `[secret NAME]`: for what
    /// hutch writes down (the audit log), where a value the user typed into a
    /// command line must not end up.
    pub fn redact(&self, text: &str) -> String {
        redact_values(text, self.list.iter().filter_map(|s| s.value.as_deref().map(|v| (s.name.as_str(), v))))
    }
}

/// `text` with each `(name, value)`'s value (8 characters or more: shorter
/// ones would match by accident) replaced by `[secret NAME]`.
pub fn redact_values<'a>(text: &str, values: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = text.to_owned();
    for (name, value) in values {
        if value.len() >= 8 && out.contains(value) {
            out = out.replace(value, &format!("[secret {name}]"));
        }
    }
    out
}

/// The decoded user:password of a `Basic` authorization value.
fn basic_credentials(text: &str) -> Option<String> {
    let encoded = text.strip_prefix("Basic ").or_else(|| text.strip_prefix("basic "))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// The VM's placeholders for `names`, made (random) for names that have none yet.
fn placeholders<'a>(net_dir: &Path, names: impl Iterator<Item = &'a String>) -> Result<BTreeMap<String, String>, NetError> {
    let path = net_dir.join(PLACEHOLDERS_FILE);
    let mut known: BTreeMap<String, String> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| NetError::BadState { path: path.clone(), why: e.to_string() })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(NetError::io(format!("reading {}", path.display()), e)),
    };
    let mut changed = false;
    for name in names {
        if !known.contains_key(name) {
            known.insert(name.clone(), new_placeholder(name)?);
            changed = true;
        }
    }
    if changed {
        let text = serde_json::to_string_pretty(&known).map_err(|e| NetError::BadState { path: path.clone(), why: e.to_string() })?;
        super::write_private(&path, text.as_bytes())?;
    }
    Ok(known)
}

/// `hutch-placeholder-NAME-<32 random hex digits>`: recognisable in a
/// guest's logs, and never a valid credential anywhere.
fn new_placeholder(name: &str) -> Result<String, NetError> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| NetError::Tls(format!("no randomness for a placeholder: {e}")))?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("hutch-placeholder-{name}-{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::network::{Mode, SecretConfig};

    fn policy() -> PolicyFile {
        let secret = |hosts: &[&str]| SecretConfig {
            from_env: "REAL_KEY".into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            source: "hutch.toml:5".into(),
        };
        PolicyFile {
            mode: Mode::Allow,
            mode_source: "default".into(),
            allow: Vec::new(),
            deny: Vec::new(),
            trust_host_cas: true,
            guest_port: 3128,
            secrets: [("API_KEY".to_owned(), secret(&["api.example.com"])), ("GH_TOKEN".to_owned(), secret(&["github.com"]))]
                .into_iter()
                .collect(),
            advice_file: "hutch.toml".into(),
        }
    }

    #[test]
    fn placeholders_are_random_per_vm_and_stable_across_loads() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = Secrets::load(a.path(), &policy(), |_| None).unwrap().guest_env();
        let again = Secrets::load(a.path(), &policy(), |_| None).unwrap().guest_env();
        let other = Secrets::load(b.path(), &policy(), |_| None).unwrap().guest_env();
        assert_eq!(first, again);
        assert_ne!(first["API_KEY"], other["API_KEY"]);
        assert!(first["API_KEY"].starts_with("hutch-placeholder-API_KEY-"), "{first:?}");
        let mode = std::fs::metadata(a.path().join(PLACEHOLDERS_FILE)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }

    #[test]
    fn real_values_go_only_to_their_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::load(dir.path(), &policy(), |var| (var == "REAL_KEY").then(|| "sk-real-value-123".to_owned())).unwrap();
        let ph = secrets.guest_env()["API_KEY"].clone();
        let (out, injected) = secrets.rewrite("api.example.com", &format!("Bearer {ph}")).unwrap();
        assert_eq!((out.as_str(), injected), ("Bearer sk-real-value-123", vec!["API_KEY".to_owned()]));
        assert_eq!(secrets.rewrite("evil.example", &format!("Bearer {ph}")), Err(Misuse::WrongHost { name: "API_KEY".into() }));
        assert_eq!(secrets.rewrite("api.example.com", "no secret here").unwrap(), ("no secret here".to_owned(), Vec::new()));
        assert!(secrets.intercepts("github.com") && !secrets.intercepts("example.org"));

        // git sends tokens as Basic credentials.
        let gh = &secrets.guest_env()["GH_TOKEN"];
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{gh}")));
        let (out, _) = secrets.rewrite("github.com", &basic).unwrap();
        assert_eq!(out, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("x-access-token:sk-real-value-123")));
        assert_eq!(secrets.find(&basic).map(|s| s.name.as_str()), Some("GH_TOKEN"));
        assert_eq!(secrets.rewrite("example.org", &basic), Err(Misuse::WrongHost { name: "GH_TOKEN".into() }));

        assert_eq!(secrets.redact("curl -H 'x: sk-real-value-123'"), "curl -H 'x: [secret API_KEY]'");
        assert!(!format!("{:?}", secrets).contains("sk-real"));
    }

    #[test]
    fn a_secret_without_a_value_is_refused_not_sent_as_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::load(dir.path(), &policy(), |_| None).unwrap();
        let ph = secrets.guest_env()["API_KEY"].clone();
        assert!(matches!(secrets.rewrite("api.example.com", &ph), Err(Misuse::NoValue { .. })));
    }
}
