//! Agent addresses: the URL-like strings that name where an agent listens
//! (`hutch-agent --listen`) or where the host connects (`hutch --addr`,
//! `HUTCH_ADDR`, the VM state record).
//!
//! | form | meaning |
//! |---|---|
//! | `unix:///path/agent.sock` | Unix stream socket (local agents, Lima's forwarded socket) |
//! | `tcp://HOST:PORT` | TCP; always paired with a bearer token |
//! | `vsock://CID:PORT` | AF_VSOCK; the agent binds `vsock://any:PORT` |
//! | `hvsock:///path.sock:PORT` | "hybrid vsock": a host Unix socket that speaks `CONNECT <port>\n` → `OK …\n` (Firecracker, vhost-device-vsock) |

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// `VMADDR_CID_ANY` from `<linux/vm_sockets.h>`: bind on every CID.
pub const VSOCK_CID_ANY: u32 = u32::MAX;
/// `VMADDR_CID_HOST` from `<linux/vm_sockets.h>`: the hypervisor's host side.
pub const VSOCK_CID_HOST: u32 = 2;

/// A parsed agent address. See the module docs for the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A Unix stream socket at this path.
    Unix(PathBuf),
    /// A TCP endpoint; `host` is a name or an IP literal (IPv6 in brackets).
    Tcp {
        /// Host name or IP literal, without brackets.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// An AF_VSOCK endpoint.
    Vsock {
        /// Context id ([`VSOCK_CID_ANY`] when binding on every CID).
        cid: u32,
        /// vsock port.
        port: u32,
    },
    /// A hybrid-vsock Unix socket and the guest port to ask it for.
    Hvsock {
        /// The host-side Unix socket of the VMM / vhost-user device.
        path: PathBuf,
        /// The guest vsock port named in `CONNECT <port>`.
        port: u32,
    },
}

/// Why an address string could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    /// The scheme is not one hutch knows.
    #[error("unsupported address {0:?}: use unix:///PATH, tcp://HOST:PORT, vsock://CID:PORT or hvsock:///PATH:PORT")]
    Scheme(String),
    /// The scheme is known but the rest does not fit it.
    #[error("invalid address {addr:?}: {why}")]
    Invalid {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why| AddrError::Invalid { addr: s.to_owned(), why };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| AddrError::Scheme(s.to_owned()))?;
        match scheme {
            "unix" => {
                if rest.is_empty() {
                    return Err(invalid("the socket path is empty"));
                }
                Ok(Addr::Unix(PathBuf::from(rest)))
            }
            "tcp" => {
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| invalid("expected tcp://HOST:PORT"))?;
                let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                if host.is_empty() {
                    return Err(invalid("the host is empty"));
                }
                let port = port.parse().map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
                Ok(Addr::Tcp { host: host.to_owned(), port })
            }
            "vsock" => {
                let (cid, port) = rest.split_once(':').ok_or_else(|| invalid("expected vsock://CID:PORT"))?;
                let cid = match cid {
                    "any" => VSOCK_CID_ANY,
                    "host" => VSOCK_CID_HOST,
                    n => n.parse().map_err(|_| invalid("the CID is not a number, \"any\" or \"host\""))?,
                };
                let port = port.parse().map_err(|_| invalid("the port is not a 32-bit number"))?;
                Ok(Addr::Vsock { cid, port })
            }
            "hvsock" => {
                let (path, port) = rest.rsplit_once(':').ok_or_else(|| invalid("expected hvsock:///PATH:PORT"))?;
                if path.is_empty() {
                    return Err(invalid("the socket path is empty"));
                }
                let port = port.parse().map_err(|_| invalid("the port is not a 32-bit number"))?;
                Ok(Addr::Hvsock { path: PathBuf::from(path), port })
            }
            _ => Err(AddrError::Scheme(s.to_owned())),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Unix(path) => write!(f, "unix://{}", path.display()),
            Addr::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Addr::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Addr::Vsock { cid: VSOCK_CID_ANY, port } => write!(f, "vsock://any:{port}"),
            Addr::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Addr::Hvsock { path, port } => write!(f, "hvsock://{}:{port}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for s in [
            "unix:///run/hutch/agent.sock",
            "tcp://127.0.0.1:7000",
            "tcp://[::1]:7000",
            "vsock://any:8080",
            "vsock://3:8080",
            "hvsock:///tmp/vm/vsock.sock:8080",
        ] {
            let addr: Addr = s.parse().unwrap();
            assert_eq!(addr.to_string(), s);
        }
        assert_eq!("vsock://host:1".parse::<Addr>().unwrap(), Addr::Vsock { cid: VSOCK_CID_HOST, port: 1 });
        assert_eq!("hvsock:///a:b.sock:9".parse::<Addr>().unwrap(), Addr::Hvsock { path: "/a:b.sock".into(), port: 9 });
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        assert!(matches!("http://x".parse::<Addr>(), Err(AddrError::Scheme(_))));
        assert!(matches!("/tmp/a.sock".parse::<Addr>(), Err(AddrError::Scheme(_))));
        for bad in ["unix://", "tcp://host", "tcp://:80", "tcp://h:99999", "vsock://x:1", "vsock://3", "hvsock://:1", "hvsock:///p:x"] {
            let err = bad.parse::<Addr>().unwrap_err();
            assert!(matches!(err, AddrError::Invalid { .. }), "{bad}: {err}");
        }
    }
}
