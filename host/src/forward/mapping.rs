//! `HOSTPORT[:GUESTPORT]`: which host port forwards to which guest port.

use std::fmt;
use std::str::FromStr;

/// One forwarded port: connections to 127.0.0.1:`host` on the host reach
/// `guest` on the guest's loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// Port on the host's 127.0.0.1.
    pub host: u16,
    /// Port on the guest's 127.0.0.1.
    pub guest: u16,
}

impl FromStr for PortMapping {
    type Err = String;

    /// `8080` (same port in the guest) or `8080:3000`; ports are 1..=65535.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let port = |text: &str, which: &str| -> Result<u16, String> {
            match text.parse::<u32>() {
                Ok(port @ 1..=65535) => Ok(port as u16),
                Ok(_) => Err(format!("{which} port {text} is not in 1..=65535")),
                Err(_) => Err(format!("{text:?} is not a {which} port (expected HOSTPORT[:GUESTPORT], e.g. 8080 or 8080:3000)")),
            }
        };
        match s.split_once(':') {
            Some((host, guest)) => Ok(PortMapping { host: port(host, "host")?, guest: port(guest, "guest")? }),
            None => {
                let both = port(s, "host")?;
                Ok(PortMapping { host: both, guest: both })
            }
        }
    }
}

impl fmt::Display for PortMapping {
    /// The `HOSTPORT:GUESTPORT` form, as `hutch forward` accepts it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.guest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_or_two_ports_in_range() {
        assert_eq!("8080".parse::<PortMapping>().unwrap(), PortMapping { host: 8080, guest: 8080 });
        assert_eq!("8080:3000".parse::<PortMapping>().unwrap(), PortMapping { host: 8080, guest: 3000 });
        assert_eq!("1:65535".parse::<PortMapping>().unwrap().to_string(), "1:65535");
        for bad in ["0", "65536", "8080:0", "8080:70000", "", ":", "a:1", "1:b", "8080:", "-1", "1:2:3"] {
            assert!(bad.parse::<PortMapping>().is_err(), "{bad:?} should be refused");
        }
    }
}
