//! Copying a tunnel's bytes both ways (CONNECT tunnels that are not
//! intercepted, and `tcp://` routes), with buffers sized for the guest link.
//!
//! tokio's `copy_bidirectional` reads 8 KiB at a time, and every read
//! towards the guest becomes one `data` message, which the guest's agent
//! decodes, hands over and writes one at a time under emulation: a download
//! through a tunnel in 8 KiB messages costs the guest 32 times the messages
//! of one in 256 KiB ([`super::guest_io::DOWN_CHUNK`]), the size plain-HTTP
//! responses already go in. Uploads come from the agent in 64 KiB messages.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// Bytes read from the server per read, and so per message to the guest.
pub const DOWN_BUFFER: usize = super::guest_io::DOWN_CHUNK;
/// Bytes read from the guest per read: the agent's largest `data` message.
pub const UP_BUFFER: usize = hutch_proto::MAX_CHUNK;

/// Copies until both sides are done; (guest → server, server → guest) bytes.
pub async fn copy<G, S>(guest: &mut G, server: &mut S) -> io::Result<(u64, u64)>
where
    G: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(guest, server, UP_BUFFER, DOWN_BUFFER).await
}
