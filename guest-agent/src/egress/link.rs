//! The guest's end of the link to the host's proxy: a virtio-net interface
//! whose other end is the host's network process (QEMU's `-netdev stream`),
//! which answers only the proxy's port. The agent finds it by its MAC
//! address, gives it its address and MTU and brings it up; guest programs
//! then reach the proxy through the guest kernel's own TCP stack, with no
//! user-space copy in the guest (the loopback listener and the vsock pipe
//! stay, for programs told of them before).
//!
//! Nothing here is a boundary: a guest that reconfigures the interface can
//! only reach the host's end of it, which decides every connection.

use std::net::Ipv4Addr;

/// Why the link could not be brought up (reported to the host as a problem;
/// the loopback proxy keeps working).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The address is not `IPV4/PREFIX`.
    #[error("link address {0:?} is not an IPv4 address with a prefix (192.168.127.2/24)")]
    Address(String),
    /// The MAC address is not six hex bytes.
    #[error("link MAC address {0:?} is not six hex bytes")]
    Mac(String),
    /// The MTU is out of range.
    #[error("link MTU {0} is not in 68..=65535")]
    Mtu(u32),
    /// No interface has that MAC address.
    #[error("no network interface has MAC address {0}")]
    NotFound(String),
    /// Listing the interfaces failed.
    #[error("listing /sys/class/net: {0}")]
    List(std::io::Error),
    /// A configuration call failed (typically: the agent is not root).
    #[error("{what} on {interface}: {source}")]
    Configure {
        /// What was being set.
        what: &'static str,
        /// The interface.
        interface: String,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// Not a Linux guest.
    #[cfg(not(target_os = "linux"))]
    #[error("the link is set up on Linux guests only")]
    Unsupported,
}

/// The link's settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The MAC address, lower case with colons.
    pub mac: String,
    /// The guest's address.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The MTU to set; `None` keeps the interface's.
    pub mtu: Option<u32>,
}

impl Settings {
    /// Checks what the host asked for.
    pub fn parse(mac: &str, address: &str, mtu: u32) -> Result<Settings, LinkError> {
        let bytes: Vec<&str> = mac.split(':').collect();
        if bytes.len() != 6 || !bytes.iter().all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit())) {
            return Err(LinkError::Mac(mac.chars().take(64).collect()));
        }
        let bad_address = || LinkError::Address(address.chars().take(64).collect());
        let (ip, prefix) = address.split_once('/').ok_or_else(bad_address)?;
        let address: Ipv4Addr = ip.parse().map_err(|_| bad_address())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p)).ok_or_else(bad_address)?;
        let mtu = match mtu {
            0 => None,
            68..=65535 => Some(mtu),
            other => return Err(LinkError::Mtu(other)),
        };
        Ok(Settings { mac: mac.to_ascii_lowercase(), address, prefix, mtu })
    }

    /// The netmask of the prefix.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - u32::from(self.prefix)))
    }
}

/// Brings the link up as `settings` say; the interface's name.
pub fn bring_up(settings: &Settings) -> Result<String, LinkError> {
    let interface = find(&settings.mac)?;
    configure(&interface, settings)?;
    Ok(interface)
}

/// The interface whose MAC address is `mac` (lower case).
fn find(mac: &str) -> Result<String, LinkError> {
    let entries = std::fs::read_dir("/sys/class/net").map_err(LinkError::List)?;
    for entry in entries {
        let entry = entry.map_err(LinkError::List)?;
        let Ok(address) = std::fs::read_to_string(entry.path().join("address")) else { continue };
        if address.trim().eq_ignore_ascii_case(mac)
            && let Some(name) = entry.file_name().to_str()
        {
            return Ok(name.to_owned());
        }
    }
    Err(LinkError::NotFound(mac.to_owned()))
}

#[cfg(target_os = "linux")]
fn configure(interface: &str, settings: &Settings) -> Result<(), LinkError> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let failed = |what: &'static str, source: std::io::Error| LinkError::Configure { what, interface: interface.to_owned(), source };
    let name = interface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(failed("its name", std::io::Error::from(std::io::ErrorKind::InvalidInput)));
    }
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(failed("a socket for its settings", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = || {
        // SAFETY: ifreq is plain old data (arrays, integers and a union of
        // them), for which all zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        ifr
    };
    let ioctl = |what: &'static str, code: libc::c_ulong, ifr: &mut libc::ifreq| {
        // SAFETY: every request used here reads or writes one `ifreq`,
        // which `ifr` is, valid and exclusively borrowed for the call.
        let rc = unsafe { libc::ioctl(socket.as_raw_fd(), code as _, ifr as *mut libc::ifreq) };
        if rc < 0 { Err(failed(what, std::io::Error::last_os_error())) } else { Ok(()) }
    };
    let sockaddr = |ip: Ipv4Addr| {
        let inet = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_in and sockaddr have the same size on Linux, and
        // the kernel reads a sockaddr of family AF_INET as a sockaddr_in.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(inet) }
    };
    if let Some(mtu) = settings.mtu {
        let mut ifr = request();
        ifr.ifr_ifru.ifru_mtu = mtu as libc::c_int;
        ioctl("setting its MTU", libc::SIOCSIFMTU, &mut ifr)?;
    }
    let mut ifr = request();
    ifr.ifr_ifru.ifru_addr = sockaddr(settings.address);
    ioctl("setting its address", libc::SIOCSIFADDR, &mut ifr)?;
    let mut ifr = request();
    ifr.ifr_ifru.ifru_netmask = sockaddr(settings.netmask());
    ioctl("setting its netmask", libc::SIOCSIFNETMASK, &mut ifr)?;
    let mut ifr = request();
    ioctl("reading its flags", libc::SIOCGIFFLAGS, &mut ifr)?;
    // SAFETY: SIOCGIFFLAGS filled the union's `ifru_flags` member.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl("bringing it up", libc::SIOCSIFFLAGS, &mut ifr)
}

#[cfg(not(target_os = "linux"))]
fn configure(_interface: &str, _settings: &Settings) -> Result<(), LinkError> {
    Err(LinkError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let s = Settings::parse("52:54:00:68:75:01", "192.168.127.2/24", 65520).unwrap();
        assert_eq!((s.address, s.prefix, s.mtu), (Ipv4Addr::new(192, 168, 127, 2), 24, Some(65520)));
        assert_eq!(s.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(Settings::parse("52:54:00:68:75:01", "10.0.0.2/32", 0).unwrap().netmask(), Ipv4Addr::BROADCAST);
        assert_eq!(Settings::parse("52:54:00:68:75:01", "10.0.0.2/32", 0).unwrap().mtu, None);
        for (mac, address, mtu) in [
            ("52:54:00:68:75", "192.168.127.2/24", 0),
            ("52:54:00:68:75:zz", "192.168.127.2/24", 0),
            ("52:54:00:68:75:01", "192.168.127.2", 0),
            ("52:54:00:68:75:01", "192.168.127.2/33", 0),
            ("52:54:00:68:75:01", "192.168.127.2/0", 0),
            ("52:54:00:68:75:01", "::1/64", 0),
            ("52:54:00:68:75:01", "192.168.127.2/24", 67),
            ("52:54:00:68:75:01", "192.168.127.2/24", 65536),
        ] {
            assert!(Settings::parse(mac, address, mtu).is_err(), "{mac} {address} {mtu}");
        }
    }

    #[test]
    fn an_unknown_mac_is_not_found() {
        // No interface has a locally administered address made up here.
        assert!(matches!(bring_up(&Settings::parse("0e:00:00:00:00:01", "10.9.9.2/24", 0).unwrap()), Err(LinkError::NotFound(_))));
    }
}
