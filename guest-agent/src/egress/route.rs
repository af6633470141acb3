//! Routes: loopback listeners besides the proxy's, for the host's `tcp://`
//! rules, so programs that ignore proxies (ssh, database clients) reach an
//! allowed host and port. The agent binds what the host asks for and writes
//! the names into `/etc/hosts`; where a connection goes is still the host's
//! decision alone (it knows which rule each listener stands for).
//!
//! What the host sends is checked all the same: listeners only on loopback
//! addresses, and only plain host names into `/etc/hosts` (never
//! `localhost`, which guest programs must keep reaching themselves).

use std::net::SocketAddr;

use hutch_proto::v1::EgressRoute;

/// Names one route may give its address.
const MAX_NAMES: usize = 16;

/// A route the agent accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Where to listen.
    pub address: SocketAddr,
    /// Names to resolve to its address.
    pub names: Vec<String>,
}

/// `route` if it is a loopback listener with plain names; else why not.
pub fn check(route: &EgressRoute) -> Result<Route, String> {
    let shown: String = route.address.chars().take(crate::limits::SHOWN_BYTES).map(|c| if c.is_control() { '?' } else { c }).collect();
    let address: SocketAddr = route.address.parse().map_err(|_| format!("route {shown:?}: not an address and port"))?;
    if !address.ip().is_loopback() || address.port() == 0 {
        return Err(format!("route {shown}: only loopback addresses with a port are listened on"));
    }
    if route.names.len() > MAX_NAMES {
        return Err(format!("route {shown}: more than {MAX_NAMES} names"));
    }
    let mut names = Vec::new();
    for name in &route.names {
        if !plain_name(name) {
            return Err(format!(
                "route {shown}: {:?} is not a host name hutch may put into /etc/hosts",
                name.chars().take(64).collect::<String>()
            ));
        }
        names.push(name.to_ascii_lowercase());
    }
    Ok(Route { address, names })
}

/// A DNS name of letters, digits, `-` and `_`, not `localhost` or below it.
fn plain_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let labels_ok = !lower.is_empty()
        && lower.len() <= 253
        && lower
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    labels_ok && lower != "localhost" && !lower.ends_with(".localhost") && lower.parse::<std::net::IpAddr>().is_err()
}

/// The `/etc/hosts` lines for `routes`: one per address that has names.
pub fn hosts_lines(routes: &[Route]) -> Vec<String> {
    let mut lines: Vec<(std::net::IpAddr, Vec<String>)> = Vec::new();
    for route in routes.iter().filter(|r| !r.names.is_empty()) {
        match lines.iter_mut().find(|(ip, _)| *ip == route.address.ip()) {
            Some((_, names)) => names.extend(route.names.iter().filter(|n| !names.contains(n)).cloned().collect::<Vec<_>>()),
            None => lines.push((route.address.ip(), route.names.clone())),
        }
    }
    lines.into_iter().map(|(ip, names)| format!("{ip}\t{}", names.join(" "))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(address: &str, names: &[&str]) -> EgressRoute {
        EgressRoute { address: address.into(), names: names.iter().map(|n| (*n).to_owned()).collect() }
    }

    #[test]
    fn only_loopback_listeners_and_plain_names_are_accepted() {
        let ok = check(&route("127.77.0.1:22", &["GitHub.com"])).unwrap();
        assert_eq!(ok, Route { address: "127.77.0.1:22".parse().unwrap(), names: vec!["github.com".into()] });
        for bad in [route("10.0.0.1:22", &[]), route("0.0.0.0:22", &[]), route("127.0.0.1:0", &[]), route("db:22", &[])] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
        for name in ["localhost", "a.localhost", "1.2.3.4", "a b", "x\ny", ""] {
            assert!(check(&route("127.77.0.1:22", &[name])).is_err(), "{name:?}");
        }
    }

    #[test]
    fn one_hosts_line_per_address() {
        let routes = [
            check(&route("127.77.0.1:22", &["github.com"])).unwrap(),
            check(&route("127.77.0.1:443", &["github.com"])).unwrap(),
            check(&route("127.77.0.2:5432", &[])).unwrap(),
        ];
        assert_eq!(hosts_lines(&routes), ["127.77.0.1\tgithub.com"]);
    }
}
