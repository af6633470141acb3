//! Where the link to a QEMU guest is: the addresses and names both ends
//! agree on. A leaf, so the QEMU backend (which adds the device) and the
//! network process (which answers on it) share it without depending on
//! each other.

use std::net::Ipv4Addr;

/// The socket in the VM's folder where QEMU listens for the network
/// process (`-netdev stream,server=on`).
pub const SOCKET: &str = "link.sock";

/// The guest interface's MAC address, by which the agent finds it.
pub const GUEST_MAC: &str = "52:54:00:68:75:01";

/// The host end's MAC address (the network process's).
pub const HOST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x68, 0x75, 0x02];

/// The host end's address: where guest programs find the proxy.
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 1);

/// The guest's address on the link.
pub const GUEST_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 2);

/// The link's prefix length.
pub const PREFIX: u8 = 24;

/// The link's MTU: nearly the largest IPv4 packet, so a download crosses
/// in 64 KiB segments, a few interrupts per megabyte in the guest, where
/// every instruction counts under emulation (QEMU's `host_mtu`).
pub const MTU: u32 = 65520;
