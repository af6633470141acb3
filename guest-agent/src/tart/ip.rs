//! `ResolveIP`: the guest's primary IPv4 address, from its interfaces.
//!
//! Primary means: up, not loopback, not link-local (169.254/16); among those,
//! the source address of the default route when there is one (found by
//! "connecting" a UDP socket, which sends nothing), else the first.

use std::net::{Ipv4Addr, UdpSocket};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

/// The guest's primary IPv4 address, if it has one.
pub fn primary_ipv4() -> Option<Ipv4Addr> {
    let candidates = candidates();
    let routed = default_route_source();
    routed.filter(|ip| candidates.contains(ip)).or_else(|| candidates.first().copied())
}

/// Usable IPv4 addresses of interfaces that are up, in interface order.
fn candidates() -> Vec<Ipv4Addr> {
    let Ok(addrs) = getifaddrs() else { return Vec::new() };
    addrs
        .filter(|a| a.flags.contains(InterfaceFlags::IFF_UP) && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK))
        .filter_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|sin| sin.ip())))
        .filter(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified())
        .collect()
}

/// The local address the kernel would use to reach the outside world.
fn default_route_source() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // TEST-NET-1 (RFC 5737): never routed anywhere real; connect() sends nothing.
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) => Some(ip),
        std::net::IpAddr::V6(_) => None,
    }
}
