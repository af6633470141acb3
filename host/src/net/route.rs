//! `tcp://HOST:PORT` rules: non-HTTP egress (git over SSH, a database)
//! through the same host-side decision as the proxy's.
//!
//! Programs that can use an HTTP proxy reach `HOST:PORT` through it with
//! CONNECT, which the rule allows like `HOST:PORT`. Programs that ignore
//! proxies get a way in of their own: each host of a `tcp://` rule has an
//! address in the guest's loopback range [`GUEST_NET`] (`127.77.0.1`, …,
//! kept in `net/routes.json` so it stays the same while the VM lives), the
//! agent listens there on the rule's port, and the guest's `/etc/hosts`
//! gives the host's name that address. `ssh git@github.com` with
//! `tcp://github.com:22` then connects to the agent, which carries the
//! connection to the host like any other; here it is decided again by the
//! policy in force (a later `hutch deny` wins), resolved and checked on the
//! host, connected, and audited as `TCP`. A rule naming an address
//! (`tcp://10.1.2.3:5432`) has no name: guest programs use its loopback
//! address, which `hutch allow` and `hutch doctor` print.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NetError;
use super::policy::PolicyFile;

/// The file in the VM's `net/` folder that keeps each host's address.
pub const ROUTES_FILE: &str = "routes.json";

/// The guest addresses routes get: 127.77.0.0/16, away from 127.0.0.1
/// (where guest servers listen) and from the handful of 127.0.x.y addresses
/// tools use.
pub const GUEST_NET: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 0);

/// One route: where it listens in the guest, where it leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The host connected to (a name or an address, normalized).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The listener in the guest.
    pub guest: SocketAddr,
    /// The rule, as written (`tcp://github.com:22`).
    pub rule: String,
}

impl Route {
    /// The name the guest resolves to the route's address, when the host is one.
    pub fn name(&self) -> Option<&str> {
        self.host.parse::<std::net::IpAddr>().is_err().then_some(self.host.as_str())
    }

    /// What a person is told about it.
    pub fn describe(&self) -> String {
        match self.name() {
            Some(name) => format!("{} in the guest: {name}:{} (resolves to {})", self.rule, self.port, self.guest),
            None => format!("{} in the guest: connect to {}", self.rule, self.guest),
        }
    }
}

/// The routes of `policy`'s `tcp://` rules, with the addresses kept in
/// `net_dir` (new hosts get the lowest free one, which is then kept).
pub fn routes(net_dir: &Path, policy: &PolicyFile) -> Result<Vec<Route>, NetError> {
    let path = net_dir.join(ROUTES_FILE);
    let mut known: BTreeMap<String, Ipv4Addr> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| NetError::BadState { path: path.clone(), source: e })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(NetError::io(format!("reading {}", path.display()), e)),
    };
    let mut changed = false;
    let mut routes = Vec::new();
    for (host, port, rule) in policy.tcp_rules() {
        let ip = match known.get(&host) {
            Some(ip) => *ip,
            None => {
                let ip = free_address(&known).ok_or_else(|| NetError::Policy("no guest address left for tcp:// rules".into()))?;
                known.insert(host.clone(), ip);
                changed = true;
                ip
            }
        };
        let route = Route { host, port, guest: SocketAddr::from((ip, port)), rule: rule.pattern };
        if !routes.iter().any(|r: &Route| r.guest == route.guest) {
            routes.push(route);
        }
    }
    if changed {
        let text = serde_json::to_string_pretty(&known).map_err(|e| NetError::BadState { path: path.clone(), source: e })?;
        super::write_private(&path, text.as_bytes())?;
    }
    Ok(routes)
}

/// The lowest address of [`GUEST_NET`] no host has.
fn free_address(known: &BTreeMap<String, Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(GUEST_NET);
    (1..0xffff).map(|n| Ipv4Addr::from(base + n)).find(|ip| !known.values().any(|k| k == ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::network::Rule;

    fn policy(allow: &[&str]) -> PolicyFile {
        PolicyFile::for_tests(allow.iter().map(|p| Rule { pattern: (*p).into(), source: "t".into() }).collect())
    }

    #[test]
    fn each_host_keeps_its_own_guest_address() {
        let dir = tempfile::tempdir().unwrap();
        let first = routes(dir.path(), &policy(&["github.com", "tcp://github.com:22", "tcp://10.1.2.3:5432"])).unwrap();
        assert_eq!(first.iter().map(|r| r.guest.to_string()).collect::<Vec<_>>(), ["127.77.0.1:22", "127.77.0.2:5432"]);
        assert_eq!(first[0].name(), Some("github.com"));
        assert_eq!(first[1].name(), None);
        // Another rule later: the old ones keep their addresses, a second port of a host shares its address.
        let later = routes(dir.path(), &policy(&["tcp://db.internal:5432", "tcp://github.com:443", "tcp://github.com:22"])).unwrap();
        let shown: Vec<String> = later.iter().map(|r| format!("{} {}", r.rule, r.guest)).collect();
        assert_eq!(
            shown,
            ["tcp://db.internal:5432 127.77.0.3:5432", "tcp://github.com:443 127.77.0.1:443", "tcp://github.com:22 127.77.0.1:22"]
        );
    }
}
