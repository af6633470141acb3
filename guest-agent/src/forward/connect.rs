//! Where a Forward stream may connect, and opening that connection.
//!
//! Only loopback addresses are allowed: the tunnel exists to reach servers
//! running in the guest (a dev server on 127.0.0.1:3000), not to turn the agent
//! into a proxy onto whatever networks the guest can reach.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hutch_proto::v1::{ForwardError, ForwardStart};
use tokio::net::TcpStream;

/// How long one connect attempt may take. Loopback answers at once; this only
/// bounds a guest so overloaded it cannot accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the guest connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The host is not a loopback address.
    #[error("{0:?} is not a loopback address or \"localhost\": forwarding only reaches servers in the guest")]
    HostNotAllowed(String),
    /// Nothing listens there.
    #[error("{0}: connection refused")]
    Refused(SocketAddr),
    /// The connect did not complete in time.
    #[error("{0}: no answer within {CONNECT_TIMEOUT:?}")]
    TimedOut(SocketAddr),
    /// Any other connect error.
    #[error("{addr}: {source}")]
    Failed {
        /// Where the agent tried to connect.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

impl ConnectFailure {
    /// The protocol's name for this failure.
    pub fn kind(&self) -> ForwardError {
        match self {
            ConnectFailure::Invalid(_) => ForwardError::ForwardInvalidRequest,
            ConnectFailure::HostNotAllowed(_) => ForwardError::ForwardHostNotAllowed,
            ConnectFailure::Refused(_) => ForwardError::ForwardRefused,
            ConnectFailure::TimedOut(_) => ForwardError::ForwardTimedOut,
            ConnectFailure::Failed { .. } => ForwardError::ForwardConnectFailed,
        }
    }
}

/// The addresses to try for `start`, in order; fails for ports out of range
/// and hosts that are not loopback.
pub fn candidates(start: &ForwardStart) -> Result<Vec<SocketAddr>, ConnectFailure> {
    let port = u16::try_from(start.guest_port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| ConnectFailure::Invalid(format!("guest port {} is not in 1..=65535", start.guest_port)))?;
    let host = start.guest_host.trim();
    let ips: Vec<IpAddr> = if host.is_empty() {
        vec![Ipv4Addr::LOCALHOST.into()]
    } else if host.eq_ignore_ascii_case("localhost") {
        vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
    } else {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => vec![ip],
            _ => return Err(ConnectFailure::HostNotAllowed(host.to_owned())),
        }
    };
    Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

/// Connects to the first of `addrs` that accepts; when none does, returns
/// the first address's failure (127.0.0.1's, for "localhost").
pub async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, ConnectFailure> {
    let mut first_failure = None;
    for &addr in addrs {
        let failure = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Interactive traffic (a dev server's websocket) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => ConnectFailure::Refused(addr),
            Ok(Err(source)) => ConnectFailure::Failed { addr, source },
            Err(_) => ConnectFailure::TimedOut(addr),
        };
        first_failure.get_or_insert(failure);
    }
    Err(first_failure.unwrap_or_else(|| ConnectFailure::Invalid("no address to connect to".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(port: u32, host: &str) -> ForwardStart {
        ForwardStart { guest_port: port, guest_host: host.to_owned() }
    }

    #[test]
    fn only_loopback_hosts_and_real_ports_are_accepted() {
        assert_eq!(candidates(&start(3000, "")).unwrap(), vec!["127.0.0.1:3000".parse().unwrap()]);
        assert_eq!(candidates(&start(80, "LOCALHOST")).unwrap().len(), 2);
        assert_eq!(candidates(&start(80, "127.1.2.3")).unwrap(), vec!["127.1.2.3:80".parse().unwrap()]);
        assert_eq!(candidates(&start(80, "[::1]")).unwrap(), vec!["[::1]:80".parse().unwrap()]);
        for host in ["10.0.0.1", "example.com", "0.0.0.0", "::"] {
            assert_eq!(candidates(&start(80, host)).unwrap_err().kind(), ForwardError::ForwardHostNotAllowed, "{host}");
        }
        for port in [0, 65536, u32::MAX] {
            assert_eq!(candidates(&start(port, "")).unwrap_err().kind(), ForwardError::ForwardInvalidRequest, "{port}");
        }
    }
}
