//! Which addresses the proxy refuses to connect to unless a rule names them
//! explicitly: everything that is not the public internet from the host's
//! point of view, so a guest cannot use the host as a stepping stone into
//! its own services (loopback), its network (private ranges), or a cloud
//! instance's metadata service (link-local 169.254.169.254, fd00:ec2::254).
//!
//! The check applies to the address the proxy actually connects to, after
//! resolving on the host: a name that resolves to 127.0.0.1 (DNS rebinding)
//! is refused like the literal. Documentation ranges (192.0.2.0/24,
//! 198.51.100.0/24, 203.0.113.0/24) are not refused: some gateways answer
//! with them (this project's CI resolves registry.npmjs.org to one).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not the public internet, or `None` when it is.
pub fn restricted(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => restricted_v4(v4),
            None => restricted_v6(v6),
        },
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        () if ip.is_loopback() => "a loopback address",
        () if ip.is_unspecified() || a == 0 => "an unspecified address",
        () if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata address",
        () if ip.is_link_local() => "a link-local address",
        () if ip.is_private() => "a private address",
        () if a == 100 && (64..128).contains(&b) => "a shared (carrier-grade NAT) address",
        () if a == 192 && b == 0 && ip.octets()[2] == 0 => "an IETF protocol address",
        () if ip.is_multicast() || ip.is_broadcast() || a >= 240 => "a multicast, broadcast or reserved address",
        () if a == 198 && (b == 18 || b == 19) => "a benchmarking address",
        () => return None,
    })
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        () if ip.is_loopback() => "a loopback address",
        () if ip.is_unspecified() => "an unspecified address",
        () if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => "the cloud metadata address",
        () if first & 0xfe00 == 0xfc00 => "a unique local (private) address",
        () if first & 0xffc0 == 0xfe80 => "a link-local address",
        () if ip.is_multicast() => "a multicast address",
        () if first == 0x64 && ip.segments()[1] == 0xff9b => match ip.octets()[12..16] {
            // NAT64: judge the IPv4 address it embeds.
            [a, b, c, d] => return restricted_v4(Ipv4Addr::new(a, b, c, d)),
            _ => return None,
        },
        () => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_internet_is_unrestricted() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "metadata"),
            ("fd00:ec2::254", "metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fd12:3456::1", "unique local"),
            ("100.100.1.1", "carrier-grade"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("64:ff9b::a01:203", "private"),
        ] {
            let got = restricted(ip.parse().unwrap());
            assert!(got.is_some_and(|g| g.contains(why)), "{ip}: {got:?}");
        }
        for ip in ["1.1.1.1", "140.82.112.3", "203.0.113.80", "2606:4700::1111", "100.128.0.1", "64:ff9b::101:101"] {
            assert_eq!(restricted(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
