//! Secrets that never enter the guest.
//!
//! For each `[secrets.NAME]` the guest sees, in variable NAME, a placeholder:
//! random per VM (kept in `net/placeholders.json` so it survives restarts of
//! the network process), worthless anywhere but in hutch's proxy. The real
//! value exists only on the host: `from_env` is the environment of the `hutch
//! up` that started (or last updated) the network process, `from_file` is
//! read from its file at each use, so a rotated key needs no restart. For
//! the secret's hosts, the proxy terminates TLS and swaps the placeholder for
//! the real value in request headers (inside `Basic` credentials too, which
//! is how git sends a token), and only there.
//!
//! A secret may be scoped further than its hosts: `methods` and path
//! prefixes (`paths`, see [`super::scope`]). Its placeholder anywhere else
//! refuses the request, which is audited: sent to another host, with another
//! method or to another path, in the URL (path or query: servers echo
//! those back, in errors and redirects) or in the body (never rewritten, so
//! a placeholder there is a mistake or a probe).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::NetError;
use super::policy::PolicyFile;
use super::scope;
use crate::config::pattern::HostPattern;

/// The placeholders' file in the VM's `net/` folder.
pub const PLACEHOLDERS_FILE: &str = "placeholders.json";

/// The beginning of every placeholder: what a request body is searched for.
pub const PLACEHOLDER_PREFIX: &str = "hutch-placeholder-";

/// Largest secret file read (a key, a token; not a document).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Where a secret's real value comes from.
#[derive(Clone)]
pub enum Origin {
    /// A host variable, as the network process was given it.
    Env {
        /// The variable.
        var: String,
        /// Its value, when it was set.
        value: Option<String>,
    },
    /// A host file, read at each use.
    File(PathBuf),
}

/// One secret as the network process holds it.
#[derive(Clone)]
pub struct Secret {
    /// The variable the guest sees.
    pub name: String,
    /// Where the real value comes from.
    pub origin: Origin,
    /// Hosts the real value is sent to.
    pub hosts: Vec<HostPattern>,
    /// Methods it may be sent with (upper case); empty: any.
    pub methods: Vec<String>,
    /// Path prefixes it may be sent to; empty: any.
    pub paths: Vec<String>,
    /// What the guest sees instead.
    pub placeholder: String,
}

impl std::fmt::Debug for Secret {
    /// Never shows the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("name", &self.name).field("placeholder", &self.placeholder).finish_non_exhaustive()
    }
}

impl Secret {
    /// Whether a real value is there to send now.
    pub fn has_value(&self) -> bool {
        self.value().is_ok()
    }

    /// Where its value comes from, for people (`$VAR`, `file PATH`).
    pub fn origin(&self) -> String {
        match &self.origin {
            Origin::Env { var, .. } => format!("${var}"),
            Origin::File(path) => format!("file {}", path.display()),
        }
    }

    /// The real value, read now; why there is none.
    pub fn value(&self) -> Result<String, Misuse> {
        let missing = |why: String| Misuse::NoValue { name: self.name.clone(), why };
        match &self.origin {
            Origin::Env { value: Some(value), .. } => Ok(value.clone()),
            Origin::Env { var, value: None } => Err(missing(format!(
                "${var} was not set when the VM's network started (set it, then `hutch up`: the running network takes the new value)"
            ))),
            Origin::File(path) => read_value(path).map_err(missing),
        }
    }

    /// SHA-256 of the placeholder and what decides the value (an
    /// environment value; a file's path, since the file is read at each
    /// use), in hex: changes when they do, and tells nothing about them.
    pub fn fingerprint(&self) -> String {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(self.placeholder.as_bytes());
        context.update(&[0]);
        match &self.origin {
            Origin::Env { value, .. } => context.update(value.as_deref().unwrap_or_default().as_bytes()),
            Origin::File(path) => context.update(path.as_os_str().as_encoded_bytes()),
        }
        context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the real value may be sent to `host`.
    pub fn allowed_for(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.matches_host(host))
    }

    /// Whether it may go with a `method` request for `path` to `host`; why not.
    pub fn check_scope(&self, host: &str, method: &str, path: &str) -> Result<(), Misuse> {
        let name = self.name.clone();
        if !self.allowed_for(host) {
            return Err(Misuse::WrongHost { name });
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return Err(Misuse::WrongMethod { name, method: shown(method), allowed: self.methods.join(", ") });
        }
        if !self.paths.is_empty() && (scope::ambiguous(path) || !self.paths.iter().any(|p| scope::under(path, p))) {
            return Err(Misuse::WrongPath { name, path: shown(path), allowed: self.paths.join(", ") });
        }
        Ok(())
    }
}

/// Guest text in a reason: printable and short.
fn shown(text: &str) -> String {
    text.chars().take(120).map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect()
}

/// A secret file's value: its text without surrounding whitespace.
fn read_value(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let fail = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(fail)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{} is larger than {} KiB: not a key", path.display(), MAX_FILE_BYTES / 1024));
    }
    let value = text.trim();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(value.to_owned())
}

/// Why a request may not carry what it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// The placeholder of `name` went to a host not among its hosts.
    WrongHost {
        /// The secret.
        name: String,
    },
    /// The placeholder went with a method the secret does not allow.
    WrongMethod {
        /// The secret.
        name: String,
        /// The request's method.
        method: String,
        /// The methods it allows.
        allowed: String,
    },
    /// The placeholder went to a path outside the secret's prefixes.
    WrongPath {
        /// The secret.
        name: String,
        /// The request's path.
        path: String,
        /// The prefixes it allows.
        allowed: String,
    },
    /// The placeholder is in the request's URL (path or query).
    InUrl {
        /// The secret.
        name: String,
    },
    /// The placeholder is in the request's body.
    InBody {
        /// The secret.
        name: String,
    },
    /// The placeholder of `name` went to one of its hosts without TLS.
    Plaintext {
        /// The secret.
        name: String,
    },
    /// There is no real value to send.
    NoValue {
        /// The secret.
        name: String,
        /// Why (a variable not set, a file not readable).
        why: String,
    },
}

impl Misuse {
    /// For the audit log and the 403 body.
    pub fn reason(&self, host: &str) -> String {
        match self {
            Misuse::WrongHost { name } => format!("the placeholder of secret {name} was sent to {host}, which is not among its hosts"),
            Misuse::WrongMethod { name, method, allowed } => {
                format!("the placeholder of secret {name} was sent with {method}, which is not among its methods ({allowed})")
            }
            Misuse::WrongPath { name, path, allowed } => {
                format!("the placeholder of secret {name} was sent to {path}, which is not under its paths ({allowed})")
            }
            Misuse::InUrl { name } => {
                format!("the placeholder of secret {name} is in the URL: hutch puts real values into request headers only")
            }
            Misuse::InBody { name } => {
                format!("the placeholder of secret {name} is in the request body: hutch puts real values into request headers only")
            }
            Misuse::Plaintext { name } => {
                format!("the placeholder of secret {name} was sent to {host} without TLS; hutch sends real values over https only")
            }
            Misuse::NoValue { name, why } => format!("secret {name} has no value: {why}"),
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
    /// `net_dir` on first use) and, for `from_env` ones, their values from `lookup`.
    pub fn load(net_dir: &Path, policy: &PolicyFile, lookup: impl Fn(&str) -> Option<String>) -> Result<Secrets, NetError> {
        let placeholders = placeholders(net_dir, policy.secrets.keys())?;
        let mut list = Vec::new();
        for (name, config) in &policy.secrets {
            let hosts = config.hosts.iter().map(|h| h.parse().map_err(NetError::Policy)).collect::<Result<_, _>>()?;
            let placeholder = placeholders.get(name).cloned().ok_or_else(|| NetError::Policy(format!("no placeholder for {name}")))?;
            let origin = match (&config.from_env, &config.from_file) {
                (Some(var), _) => Origin::Env { var: var.clone(), value: lookup(var).filter(|v| !v.is_empty()) },
                (None, Some(file)) => Origin::File(PathBuf::from(file)),
                (None, None) => return Err(NetError::Policy(format!("secret {name} has no source"))),
            };
            let (methods, paths) = (config.methods.clone(), config.paths.clone());
            list.push(Secret { name: name.clone(), origin, hosts, methods, paths, placeholder });
        }
        Ok(Secrets { list })
    }

    /// Every secret.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.list.iter()
    }

    /// The value of `name`'s variable, when it is a `from_env` secret that has one.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.list.iter().find(|s| s.name == name).and_then(|s| match &s.origin {
            Origin::Env { value, .. } => value.as_deref(),
            Origin::File(_) => None,
        })
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

    /// The first secret whose placeholder `bytes` carries.
    pub fn find_bytes(&self, bytes: &[u8]) -> Option<&Secret> {
        self.list.iter().find(|s| memchr::memmem::find(bytes, s.placeholder.as_bytes()).is_some())
    }

    /// The longest placeholder: how much of a body must be kept between
    /// chunks to find one cut in two.
    pub fn longest(&self) -> usize {
        self.list.iter().map(|s| s.placeholder.len()).max().unwrap_or(0)
    }

    /// `text` (a header value of a `method` request for `path` to `host`,
    /// over TLS) with the placeholders of the secrets allowed there replaced
    /// by their real values, and the names of those secrets; or why the
    /// request must be refused.
    pub fn rewrite(&self, host: &str, method: &str, path: &str, text: &str) -> Result<(String, Vec<String>), Misuse> {
        if self.find(text).is_none() {
            return Ok((text.to_owned(), Vec::new()));
        }
        let mut injected = Vec::new();
        let swap = |mut text: String, injected: &mut Vec<String>| -> Result<String, Misuse> {
            for secret in &self.list {
                if !text.contains(&secret.placeholder) {
                    continue;
                }
                secret.check_scope(host, method, path)?;
                let value = secret.value()?;
                text = text.replace(&secret.placeholder, &value);
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
        let values: Vec<(String, String)> = self.list.iter().filter_map(|s| s.value().ok().map(|v| (s.name.clone(), v))).collect();
        redact_values(text, values.iter().map(|(n, v)| (n.as_str(), v.as_str())))
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
        Ok(text) => serde_json::from_str(&text).map_err(|e| NetError::BadState { path: path.clone(), source: e })?,
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
        let text = serde_json::to_string_pretty(&known).map_err(|e| NetError::BadState { path: path.clone(), source: e })?;
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
    Ok(format!("{PLACEHOLDER_PREFIX}{name}-{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::network::SecretConfig;

    fn policy() -> PolicyFile {
        let secret = |hosts: &[&str]| SecretConfig {
            from_env: Some("REAL_KEY".into()),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            source: "hutch.toml:5".into(),
            ..SecretConfig::default()
        };
        PolicyFile {
            secrets: [("API_KEY".to_owned(), secret(&["api.example.com"])), ("GH_TOKEN".to_owned(), secret(&["github.com"]))]
                .into_iter()
                .collect(),
            ..PolicyFile::for_tests(Vec::new())
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
        let (out, injected) = secrets.rewrite("api.example.com", "GET", "/", &format!("Bearer {ph}")).unwrap();
        assert_eq!((out.as_str(), injected), ("Bearer sk-real-value-123", vec!["API_KEY".to_owned()]));
        assert_eq!(secrets.rewrite("evil.example", "GET", "/", &format!("Bearer {ph}")), Err(Misuse::WrongHost { name: "API_KEY".into() }));
        assert_eq!(secrets.rewrite("api.example.com", "GET", "/", "no secret here").unwrap(), ("no secret here".to_owned(), Vec::new()));
        assert!(secrets.intercepts("github.com") && !secrets.intercepts("example.org"));

        // git sends tokens as Basic credentials.
        let gh = &secrets.guest_env()["GH_TOKEN"];
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{gh}")));
        let (out, _) = secrets.rewrite("github.com", "GET", "/", &basic).unwrap();
        assert_eq!(out, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("x-access-token:sk-real-value-123")));
        assert_eq!(secrets.find(&basic).map(|s| s.name.as_str()), Some("GH_TOKEN"));
        assert_eq!(secrets.rewrite("example.org", "GET", "/", &basic), Err(Misuse::WrongHost { name: "GH_TOKEN".into() }));

        assert_eq!(secrets.redact("curl -H 'x: sk-real-value-123'"), "curl -H 'x: [secret API_KEY]'");
        assert!(!format!("{:?}", secrets).contains("sk-real"));
    }

    #[test]
    fn a_secret_without_a_value_is_refused_not_sent_as_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::load(dir.path(), &policy(), |_| None).unwrap();
        let ph = secrets.guest_env()["API_KEY"].clone();
        assert!(matches!(secrets.rewrite("api.example.com", "GET", "/", &ph), Err(Misuse::NoValue { .. })));
    }

    #[test]
    fn methods_and_paths_scope_a_secret_and_a_file_is_read_at_each_use() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-first-value\n").unwrap();
        let mut policy = policy();
        let scoped = SecretConfig {
            from_file: Some(key.display().to_string()),
            hosts: vec!["api.example.com".into()],
            methods: vec!["GET".into()],
            paths: vec!["/v1".into()],
            source: "hutch.toml:9".into(),
            ..SecretConfig::default()
        };
        policy.secrets.insert("SCOPED".into(), scoped);
        let secrets = Secrets::load(dir.path(), &policy, |_| None).unwrap();
        let ph = secrets.guest_env()["SCOPED"].clone();
        let rewrite = |method: &str, path: &str| secrets.rewrite("api.example.com", method, path, &ph);
        assert_eq!(rewrite("GET", "/v1/models").unwrap().0, "sk-first-value");
        assert!(matches!(rewrite("POST", "/v1/models"), Err(Misuse::WrongMethod { method, .. }) if method == "POST"));
        assert!(matches!(rewrite("GET", "/v10"), Err(Misuse::WrongPath { .. })));
        assert!(matches!(rewrite("GET", "/v1/../admin"), Err(Misuse::WrongPath { .. })));
        // Rotated on the host: the next request carries the new value.
        std::fs::write(&key, "sk-second-value").unwrap();
        assert_eq!(rewrite("GET", "/v1").unwrap().0, "sk-second-value");
        std::fs::remove_file(&key).unwrap();
        assert!(matches!(rewrite("GET", "/v1"), Err(Misuse::NoValue { why, .. }) if why.contains("cannot read")));
        assert_eq!(secrets.find_bytes(format!("{{\"k\":\"{ph}\"}}").as_bytes()).map(|s| s.name.as_str()), Some("SCOPED"));
    }
}
