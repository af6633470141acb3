//! Host patterns of the network policy: what `allow` and `deny` entries and a
//! secret's `hosts` may say.
//!
//! - `example.com`: that host name exactly (ports 80 and 443);
//! - `*.example.com`: any name below it, at any depth, not `example.com` itself;
//! - `10.1.2.3`, `::1`, `10.0.0.0/8`, `fd00::/8`: an IP address or range, for
//!   requests that name an address;
//! - any of these with `:PORT` (`localhost:8080`, `[::1]:3000`) for that port
//!   only, or `:*` for every port;
//! - `tcp://HOST:PORT` (`tcp://github.com:22`, `tcp://10.1.2.3:5432`): one
//!   host, one port, for any TCP protocol: besides what `HOST:PORT` allows
//!   through the proxy, the guest gets a local address that leads there, for
//!   programs that ignore proxies (see `crate::net::route`).
//!
//! Names are compared in lower case without a trailing dot, so
//! `API.Example.com.` is `api.example.com`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The ports a pattern without `:PORT` covers: HTTP and HTTPS.
pub const DEFAULT_PORTS: [u16; 2] = [443, 80];

/// Which hosts a pattern covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// One name.
    Exact(String),
    /// Every name strictly below this suffix (stored without the `*.`).
    Below(String),
    /// An address range: the network address and prefix length.
    Net(IpAddr, u8),
}

/// Which ports a pattern covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// 80 and 443.
    Web,
    /// One port.
    One(u16),
    /// Every port.
    Any,
}

/// One parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    /// The hosts.
    pub host: HostMatch,
    /// The ports.
    pub port: PortMatch,
    /// Written as `tcp://HOST:PORT`: the guest also gets a local address
    /// leading to that one host and port.
    pub tcp: bool,
    text: String,
}

/// The scheme of a rule that opens a TCP route besides the proxy.
pub const TCP_SCHEME: &str = "tcp://";

impl HostPattern {
    /// Whether `host` (a name or an IP address, as normalized by
    /// [`normalize_host`]) on `port` is covered.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            PortMatch::Web => DEFAULT_PORTS.contains(&port),
            PortMatch::One(p) => p == port,
            PortMatch::Any => true,
        };
        port_ok && self.matches_host(host)
    }

    /// The one host and port a `tcp://` rule leads to.
    pub fn tcp_target(&self) -> Option<(String, u16)> {
        match (self.tcp, &self.host, self.port) {
            (true, HostMatch::Exact(name), PortMatch::One(port)) => Some((name.clone(), port)),
            (true, HostMatch::Net(ip, _), PortMatch::One(port)) => Some((ip.to_string(), port)),
            _ => None,
        }
    }

    /// Whether `host` is covered, whatever the port.
    pub fn matches_host(&self, host: &str) -> bool {
        match &self.host {
            HostMatch::Exact(name) => name == host,
            HostMatch::Below(suffix) => {
                host.len() > suffix.len() + 1 && host.ends_with(suffix.as_str()) && {
                    let dot = host.len() - suffix.len() - 1;
                    host.as_bytes()[dot] == b'.'
                }
            }
            HostMatch::Net(net, bits) => host.parse::<IpAddr>().is_ok_and(|ip| in_net(ip, *net, *bits)),
        }
    }

    /// Whether the pattern names its hosts one by one (a name or an address,
    /// not `*.` or a range wider than one address): only such patterns may
    /// open the way to loopback, private and link-local addresses.
    pub fn is_explicit(&self) -> bool {
        match &self.host {
            HostMatch::Exact(_) => true,
            HostMatch::Below(_) => false,
            HostMatch::Net(ip, bits) => u32::from(*bits) == max_bits(*ip),
        }
    }
}

impl fmt::Display for HostPattern {
    /// The pattern as it was written (normalized).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let written = s.trim();
        let bad = |why: &str| {
            format!(
                "{written:?} is not a host pattern: {why} (e.g. \"example.com\", \"*.example.com\", \"localhost:8080\", \"10.0.0.0/8\", \"tcp://github.com:22\")"
            )
        };
        let (tcp, text) = match written.get(..TCP_SCHEME.len()) {
            Some(scheme) if scheme.eq_ignore_ascii_case(TCP_SCHEME) => (true, &written[TCP_SCHEME.len()..]),
            _ => (false, written),
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.contains("://") {
            return Err(bad("the only scheme a rule may have is tcp://"));
        }
        let (host, port) = split_port(text).map_err(|why| bad(&why))?;
        let port = match port {
            None => PortMatch::Web,
            Some("*") => PortMatch::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => PortMatch::One(p),
                _ => return Err(bad("the port is not in 1..=65535 or *")),
            },
        };
        let host = if let Some((net, bits)) = host.split_once('/') {
            let ip: IpAddr = net.parse().map_err(|_| bad("the range does not start with an IP address"))?;
            let bits: u8 =
                bits.parse().ok().filter(|b| u32::from(*b) <= max_bits(ip)).ok_or_else(|| bad("the prefix length is out of range"))?;
            HostMatch::Net(ip, bits)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostMatch::Net(ip, max_bits(ip) as u8)
        } else if host == "*" {
            return Err(bad("`*` alone would allow everything: use mode = \"open\" (or --network open) for that"));
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostMatch::Below(normalize_name(suffix).ok_or_else(|| bad("not a host name after `*.`"))?)
        } else {
            HostMatch::Exact(normalize_name(host).ok_or_else(|| bad("not a host name"))?)
        };
        let shown_host = match &host {
            HostMatch::Exact(name) => name.clone(),
            HostMatch::Below(suffix) => format!("*.{suffix}"),
            HostMatch::Net(ip, bits) if u32::from(*bits) == max_bits(*ip) => ip.to_string(),
            HostMatch::Net(ip, bits) => format!("{ip}/{bits}"),
        };
        if tcp {
            let one_host = match &host {
                HostMatch::Exact(_) => true,
                HostMatch::Net(ip, bits) => u32::from(*bits) == max_bits(*ip),
                HostMatch::Below(_) => false,
            };
            if !one_host || !matches!(port, PortMatch::One(_)) {
                return Err(bad("a tcp:// rule names one host and one port (tcp://HOST:PORT), no `*.`, range or `:*`"));
            }
        }
        let shown = match port {
            PortMatch::Web => shown_host,
            PortMatch::One(p) => join_port(&shown_host, &p.to_string()),
            PortMatch::Any => join_port(&shown_host, "*"),
        };
        let text = if tcp { format!("{TCP_SCHEME}{shown}") } else { shown };
        Ok(HostPattern { host, port, tcp, text })
    }
}

fn join_port(host: &str, port: &str) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// `host[:port]`, `[v6][:port]`, or a bare IPv6 address / range (no port).
fn split_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("a `[` without its `]`")?;
        return match after {
            "" => Ok((host, None)),
            _ => after.strip_prefix(':').map(|p| (host, Some(p))).ok_or_else(|| "text after `]` that is not `:PORT`".to_owned()),
        };
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        1 => Ok(text.split_once(':').map(|(h, p)| (h, Some(p))).unwrap_or((text, None))),
        _ => Ok((text, None)),
    }
}

/// A host name in lower case without its trailing dot, if it is one: labels
/// of letters, digits, `-` and `_`, at most 253 characters.
pub fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(name)
}

/// A request's host as policy compares it: an IP address in its canonical
/// form (brackets removed), or a normalized name; `None` for anything else.
pub fn normalize_host(host: &str) -> Option<String> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => Some(ip.to_string()),
        Err(_) => normalize_name(bare),
    }
}

fn max_bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// Whether `ip` lies in `net`/`bits` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    #[test]
    fn names_wildcards_addresses_and_ports() {
        assert!(p("GitHub.com.").matches("github.com", 443));
        assert!(p("github.com").matches("github.com", 80));
        assert!(!p("github.com").matches("github.com", 22));
        assert!(!p("github.com").matches("api.github.com", 443));
        assert!(p("*.githubusercontent.com").matches("raw.githubusercontent.com", 443));
        assert!(p("*.githubusercontent.com").matches("a.b.githubusercontent.com", 443));
        assert!(!p("*.githubusercontent.com").matches("githubusercontent.com", 443));
        assert!(!p("*.githubusercontent.com").matches("evilgithubusercontent.com", 443));
        assert!(p("localhost:8080").matches("localhost", 8080));
        assert!(!p("localhost:8080").matches("localhost", 443));
        assert!(p("example.com:*").matches("example.com", 22));
        assert!(p("10.0.0.0/8").matches("10.9.8.7", 443));
        assert!(!p("10.0.0.0/8").matches("11.0.0.1", 443));
        assert!(p("[::1]:3000").matches("::1", 3000));
        assert!(p("fd00::/8").matches("fd12::1", 443));
        assert_eq!(p("[::1]:3000").to_string(), "[::1]:3000");
        assert_eq!(p("*.Example.com:*").to_string(), "*.example.com:*");
        assert!(p("127.0.0.1:8080").is_explicit() && p("db.internal").is_explicit());
        assert!(!p("*.internal").is_explicit() && !p("10.0.0.0/8").is_explicit());
        let tcp = p("TCP://GitHub.com:22");
        assert_eq!((tcp.to_string(), tcp.tcp_target()), ("tcp://github.com:22".to_owned(), Some(("github.com".to_owned(), 22))));
        assert!(tcp.matches("github.com", 22) && !tcp.matches("github.com", 443) && tcp.is_explicit());
        assert_eq!(p("tcp://[::1]:5432").tcp_target(), Some(("::1".to_owned(), 5432)));
        assert_eq!(p("github.com:22").tcp_target(), None);
        for bad in [
            "",
            "*",
            "exa mple.com",
            "a..b",
            "host:0",
            "host:70000",
            "10.0.0.0/33",
            "[::1",
            "*.",
            "-/8",
            "tcp://",
            "tcp://db",
            "tcp://*.x.com:22",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} should be refused");
        }
        for bad in ["tcp://db:*", "tcp://10.0.0.0/8:22", "http://example.com", "udp://x:53"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn hosts_are_normalized_and_mapped_addresses_count_as_ipv4() {
        assert_eq!(normalize_host("[::1]").as_deref(), Some("::1"));
        assert_eq!(normalize_host("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("bad host"), None);
        assert!(in_net("::ffff:10.1.2.3".parse().unwrap(), "10.0.0.0".parse().unwrap(), 8));
    }
}
