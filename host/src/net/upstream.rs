//! Opening the host's side of a guest request: resolve the name on the host,
//! check every address, connect to one that passed.
//!
//! The address checked is the address connected to: the name is resolved
//! once, here, and the socket is opened to the resulting address, so a name
//! that resolves to a public address for the check and to 127.0.0.1 for the
//! connect (DNS rebinding) cannot happen. Loopback, private, link-local and
//! metadata addresses need a rule that names the host itself.
//!
//! When the host reaches the internet through a proxy (`HTTPS_PROXY` or
//! `ALL_PROXY` set for hutch, an `http://` URL; `NO_PROXY` honoured), hutch's
//! connections go through it with CONNECT, after the same checks. A name the
//! host cannot resolve itself is then left to that proxy.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::address;

/// How long resolving a name, or one connect, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to where the guest asked to go.
pub struct Connected {
    /// The socket.
    pub stream: TcpStream,
    /// The address connected to (the host's proxy's, when one is used).
    pub addr: String,
}

/// Why the host side could not be opened.
#[derive(Debug)]
pub enum Refusal {
    /// Every address the name has is one only an explicit rule opens.
    Restricted {
        /// The first such address.
        addr: IpAddr,
        /// What kind of address it is.
        why: &'static str,
    },
    /// The name does not resolve.
    Unresolved(String),
    /// No address accepted the connection.
    Unreachable(String),
}

impl Refusal {
    /// For the audit log and the guest's error page.
    pub fn reason(&self, host: &str) -> String {
        match self {
            Refusal::Restricted { addr, why } if addr.to_string() == host => {
                format!("{host} is {why}, which only a rule naming it allows")
            }
            Refusal::Restricted { addr, why } => {
                format!("{host} resolves to {addr}, {why}, which only a rule naming {host} itself allows")
            }
            Refusal::Unresolved(why) => format!("{host} does not resolve on the host: {why}"),
            Refusal::Unreachable(why) => format!("cannot connect to {host}: {why}"),
        }
    }

    /// Whether this is the policy's doing (403) rather than the network's (502).
    pub fn is_policy(&self) -> bool {
        matches!(self, Refusal::Restricted { .. })
    }
}

/// The host's own proxy, if hutch must go through one.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    proxy: Option<(String, u16)>,
    no_proxy: Vec<String>,
}

impl Upstream {
    /// From hutch's own environment.
    pub fn from_env() -> Upstream {
        Upstream::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Upstream {
        let first = |names: &[&str]| names.iter().find_map(|n| var(n).filter(|v| !v.trim().is_empty()));
        let proxy = first(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]).and_then(|url| {
            let rest = url.trim().strip_prefix("http://")?;
            let authority = rest.split('/').next()?.rsplit('@').next()?;
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse().ok()?),
                _ => (authority, 80),
            };
            Some((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
        });
        let no_proxy = first(&["NO_PROXY", "no_proxy"])
            .map(|list| list.split(',').map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase()).filter(|e| !e.is_empty()).collect())
            .unwrap_or_default();
        Upstream { proxy, no_proxy }
    }

    fn proxy_for(&self, host: &str) -> Option<&(String, u16)> {
        let bypass = self.no_proxy.iter().any(|e| e == "*" || host == e || host.ends_with(&format!(".{e}")));
        self.proxy.as_ref().filter(|_| !bypass)
    }

    /// Connects to `host` (normalized) on `port`; `explicit` when the rule
    /// that allowed it names the host itself.
    pub async fn connect(&self, host: &str, port: u16, explicit: bool) -> Result<Connected, Refusal> {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => return self.unresolved(host, port, e.to_string()).await,
                Err(_) => return self.unresolved(host, port, format!("no answer within {CONNECT_TIMEOUT:?}")).await,
            },
        };
        let mut first_refused = None;
        let permitted: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match address::restricted(a.ip()) {
                Some(why) if !explicit => {
                    first_refused.get_or_insert(Refusal::Restricted { addr: a.ip(), why });
                    false
                }
                _ => true,
            })
            .collect();
        if permitted.is_empty() {
            return Err(first_refused.unwrap_or_else(|| Refusal::Unresolved("no address".into())));
        }
        // The host's proxy is for the internet, not for what only this host reaches.
        if permitted.iter().all(|a| address::restricted(a.ip()).is_none())
            && let Some((proxy_host, proxy_port)) = self.proxy_for(host)
        {
            return through_proxy(proxy_host, *proxy_port, host, port).await;
        }
        let mut last = String::new();
        for addr in permitted {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Connected { stream, addr: addr.to_string() });
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: no answer within {CONNECT_TIMEOUT:?}"),
            }
        }
        Err(Refusal::Unreachable(last))
    }

    /// A name the host cannot resolve: its proxy may, if it has one.
    async fn unresolved(&self, host: &str, port: u16, why: String) -> Result<Connected, Refusal> {
        match self.proxy_for(host) {
            Some((proxy_host, proxy_port)) => through_proxy(proxy_host, *proxy_port, host, port).await,
            None => Err(Refusal::Unresolved(why)),
        }
    }
}

/// A tunnel to `host:port` through the HTTP proxy at `proxy_host:proxy_port`.
async fn through_proxy(proxy_host: &str, proxy_port: u16, host: &str, port: u16) -> Result<Connected, Refusal> {
    let unreachable = |e: String| Refusal::Unreachable(format!("through the host's proxy {proxy_host}:{proxy_port}: {e}"));
    let connect = async {
        let mut stream = TcpStream::connect((proxy_host, proxy_port)).await?;
        let _ = stream.set_nodelay(true);
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        stream.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await?;
        // Byte by byte up to the blank line: what follows belongs to the tunnel.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(io::Error::other("its answer to CONNECT is too long"));
            }
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await? == 0 {
                return Err(io::Error::other("it closed the connection"));
            }
            head.push(byte[0]);
        }
        let status = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(io::Error::other(format!("it answered {status:?}")));
        }
        Ok(stream)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => Ok(Connected { stream, addr: format!("{proxy_host}:{proxy_port} (the host's proxy)") }),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_addresses_need_an_explicit_rule_whatever_the_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Upstream::default();
        for host in ["127.0.0.1", "localhost"] {
            let refused = up.connect(host, port, false).await.err().unwrap();
            assert!(refused.is_policy(), "{host}: {refused:?}");
            assert!(refused.reason(host).contains("a loopback address"), "{}", refused.reason(host));
        }
        let connected = up.connect("127.0.0.1", port, true).await.unwrap();
        assert_eq!(connected.addr, format!("127.0.0.1:{port}"));
        assert!(matches!(up.connect("no-such-host.invalid", 443, false).await, Err(Refusal::Unresolved(_))));
    }

    #[test]
    fn the_hosts_proxy_comes_from_the_usual_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        let up = Upstream::from_vars(vars(&[("https_proxy", "http://user:pw@proxy.corp:8080/"), ("NO_PROXY", ".internal,example.org")]));
        assert_eq!(up.proxy, Some(("proxy.corp".into(), 8080)));
        assert!(up.proxy_for("api.example.com").is_some());
        assert!(up.proxy_for("db.internal").is_none() && up.proxy_for("example.org").is_none());
        assert_eq!(Upstream::from_vars(vars(&[("HTTPS_PROXY", "socks5://x:1")])).proxy, None);
        assert_eq!(Upstream::from_vars(vars(&[("ALL_PROXY", "http://[::1]:3128")])).proxy, Some(("::1".into(), 3128)));
    }
}
