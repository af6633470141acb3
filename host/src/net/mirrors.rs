//! The package mirrors a setup hook reaches while `hutch image prepare` runs
//! it: the hook is where a user installs tools with apt, and the image is
//! being built, so the build's network includes Debian's and Ubuntu's own
//! mirrors (and `HUTCH_DEBIAN_MIRROR`'s host, the mirror `cargo xtask image`
//! builds from) on top of the configuration's allow list. Only for the hook
//! of the VM that prepares the image, which is deleted afterwards: VMs made
//! from the image get the configuration's policy, and nothing more.
//!
//! The list is hutch's own, not read from the guest's apt sources: what the
//! guest may reach is never decided by what the guest says. A base whose
//! sources name another mirror needs it in `[network] allow`.

use crate::config::NetworkConfig;
use crate::config::network::Rule;
use crate::config::pattern::HostPattern;

/// Where `apt` on Debian and Ubuntu fetches from by default.
pub const MIRRORS: &[&str] =
    &["deb.debian.org", "security.debian.org", "archive.ubuntu.com", "*.archive.ubuntu.com", "security.ubuntu.com", "ports.ubuntu.com"];

/// What the audit log names as the rule behind these hosts.
pub const SOURCE: &str = "image prepare (package mirrors)";

/// `config` with the mirrors allowed (deny rules still win; `mode = "none"`
/// stays none, `open` stays open).
pub fn with_mirrors(config: &NetworkConfig) -> NetworkConfig {
    let mut config = config.clone();
    let extra = std::env::var("HUTCH_DEBIAN_MIRROR").ok().and_then(|url| mirror_host(&url));
    for pattern in MIRRORS.iter().map(|m| (*m).to_owned()).chain(extra) {
        if !config.allow.iter().any(|rule| rule.pattern == pattern) {
            config.allow.push(Rule { pattern, source: SOURCE.into() });
        }
    }
    config
}

/// The host (and port, when the URL names one) of a mirror's URL, as an
/// allow pattern; `None` for what is not an http(s) URL with a host.
fn mirror_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let pattern: HostPattern = authority.parse().ok()?;
    Some(pattern.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_added_once_and_named() {
        let config = with_mirrors(&NetworkConfig::default());
        let added: Vec<&Rule> = config.allow.iter().filter(|r| r.source == SOURCE).collect();
        assert!(added.iter().any(|r| r.pattern == "deb.debian.org"), "{added:?}");
        assert!(added.iter().all(|r| r.pattern.parse::<HostPattern>().is_ok()));
        let again = with_mirrors(&config);
        assert_eq!(again.allow.len(), config.allow.len());
    }

    #[test]
    fn a_mirror_url_becomes_its_host() {
        assert_eq!(mirror_host("http://mirror.example.com/debian").as_deref(), Some("mirror.example.com"));
        assert_eq!(mirror_host("http://10.0.0.5:3142/debian").as_deref(), Some("10.0.0.5:3142"));
        assert_eq!(mirror_host("https://user@mirror.example.com").as_deref(), Some("mirror.example.com"));
        assert_eq!(mirror_host("file:///srv/mirror"), None);
        assert_eq!(mirror_host("http:///debian"), None);
    }
}
