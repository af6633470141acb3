//! Hybrid vsock: reaching a guest vsock port through a host Unix socket.
//!
//! Firecracker and rust-vmm's vhost-device-vsock expose guest vsock as a Unix
//! socket on the host. A client connects, writes `CONNECT <port>\n`, and reads
//! one line back: `OK <host-side port>\n` on success; on failure the proxy
//! closes the connection (or answers something else). After `OK` the socket is
//! a raw byte stream to the guest's listener.

use std::io;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Longest reply line accepted before giving up (real replies are ~10 bytes).
const MAX_REPLY: usize = 64;

/// The proxy did not say OK.
#[derive(Debug, thiserror::Error)]
#[error("{path}: CONNECT {port} answered {reply}")]
pub struct Refused {
    /// The proxy's socket.
    pub path: String,
    /// The guest port.
    pub port: u32,
    /// The reply, or a description of how the proxy hung up.
    pub reply: String,
}

/// Connects to guest `port` through the hybrid-vsock socket at `path`.
pub async fn connect(path: &Path, port: u32) -> io::Result<UnixStream> {
    let mut stream = UnixStream::connect(path).await?;
    stream.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
    // Read byte by byte: anything after the newline already belongs to the guest.
    let mut line = Vec::with_capacity(16);
    loop {
        let mut byte = [0u8; 1];
        let refused =
            |reply: String| io::Error::new(io::ErrorKind::ConnectionRefused, Refused { path: path.display().to_string(), port, reply });
        if stream.read(&mut byte).await? == 0 {
            return Err(refused("nothing (the connection was closed)".into()));
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() > MAX_REPLY {
            return Err(refused(format!("{:?}... (too long)", String::from_utf8_lossy(&line))));
        }
    }
    let reply = String::from_utf8_lossy(&line);
    if reply.starts_with("OK ") || reply == "OK" {
        Ok(stream)
    } else {
        Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            Refused { path: path.display().to_string(), port, reply: format!("{reply:?}") },
        ))
    }
}
