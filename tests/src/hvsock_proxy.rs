//! A hybrid-vsock endpoint for tests: a Unix socket that speaks the
//! Firecracker / vhost-device-vsock handshake (`CONNECT <port>\n` →
//! `OK <port>\n`) and then splices bytes to a real agent's Unix socket.
//! Ports other than the one it serves get their connection closed, as
//! vhost-device-vsock does when nothing listens on the guest port.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A running proxy; its thread ends with the test process.
pub struct HvsockProxy {
    /// The proxy's socket path.
    pub path: PathBuf,
}

impl HvsockProxy {
    /// Listens at `path` and forwards connections for `port` to `agent_socket`.
    pub fn start(path: &Path, port: u32, agent_socket: &Path) -> HvsockProxy {
        let listener = UnixListener::bind(path).expect("bind hvsock proxy");
        let agent_socket = agent_socket.to_path_buf();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let agent_socket = agent_socket.clone();
                std::thread::spawn(move || serve(conn, port, &agent_socket));
            }
        });
        HvsockProxy { path: path.to_path_buf() }
    }
}

fn serve(conn: UnixStream, port: u32, agent_socket: &Path) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.trim() != format!("CONNECT {port}") {
        return; // dropping `conn` closes it: the client sees the refusal
    }
    let Ok(agent) = UnixStream::connect(agent_socket) else { return };
    let mut conn_w = conn;
    conn_w.write_all(format!("OK {}\n", 1_000_000 + port).as_bytes()).expect("reply");
    // The client sends nothing before OK, so the BufReader holds no extra bytes.
    let (mut agent_r, mut agent_w) = (agent.try_clone().expect("clone"), agent);
    let mut conn_r = reader.into_inner();
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut conn_r, &mut agent_w);
        let _ = agent_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut agent_r, &mut conn_w);
    let _ = conn_w.shutdown(std::net::Shutdown::Write);
    let _ = upstream.join();
}
