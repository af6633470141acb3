//! Binding the agent's listeners: Unix sockets (mode 0600), TCP (token
//! required) and vsock (inside a guest).

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use hutch_proto::addr::Addr;
use tokio::net::{TcpListener, UnixListener};
use tokio_vsock::{VsockAddr, VsockListener};

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address is of a kind the agent cannot listen on.
    #[error("cannot listen on {0}: hvsock addresses are host-side only; inside the guest listen on vsock://any:PORT")]
    Unsupported(Addr),
    /// TCP without a token would let anyone on the network run commands.
    #[error("refusing to listen on {0} without --token-file: TCP is reachable by others, so calls must carry a bearer token")]
    TcpWithoutToken(Addr),
    /// Something already listens at this Unix socket.
    #[error("{0} is in use by a running agent: stop it, or pick another path")]
    InUse(PathBuf),
    /// A non-socket file is in the way.
    #[error("{0} exists and is not a socket: refusing to replace it")]
    NotASocket(PathBuf),
    /// The OS refused.
    #[error("cannot listen on {addr}: {source}")]
    Io {
        /// The address.
        addr: Addr,
        /// The OS error.
        source: io::Error,
    },
}

/// A bound listener, ready to be served.
pub enum Listener {
    /// A Unix socket; the path is removed again at shutdown.
    Unix(UnixListener, PathBuf),
    /// A TCP socket (always behind the token check).
    Tcp(TcpListener),
    /// A vsock socket.
    Vsock(VsockListener),
}

/// Binds `addr`. `has_token` says whether TCP calls can be authenticated.
pub async fn bind(addr: &Addr, has_token: bool) -> Result<Listener, ListenError> {
    let io_err = |source| ListenError::Io { addr: addr.clone(), source };
    match addr {
        Addr::Unix(path) => match unix_in_use(path) {
            Some(err) => Err(err),
            None => bind_unix(path).map(|l| Listener::Unix(l, path.clone())).map_err(io_err),
        },
        Addr::Tcp { host, port } => {
            if !has_token {
                return Err(ListenError::TcpWithoutToken(addr.clone()));
            }
            TcpListener::bind((host.as_str(), *port)).await.map(Listener::Tcp).map_err(io_err)
        }
        Addr::Vsock { cid, port } => VsockListener::bind(VsockAddr::new(*cid, *port)).map(Listener::Vsock).map_err(io_err),
        Addr::Hvsock { .. } => Err(ListenError::Unsupported(addr.clone())),
    }
}

/// Refuses to take over a path that is not a socket or that a live agent serves.
/// A stale socket left by an agent that died is fine: [`bind_unix`] replaces it.
fn unix_in_use(path: &Path) -> Option<ListenError> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_socket() {
        Some(ListenError::NotASocket(path.into()))
    } else if std::os::unix::net::UnixStream::connect(path).is_ok() {
        Some(ListenError::InUse(path.into()))
    } else {
        None
    }
}

/// [`hutch_proto::unix_socket::bind_private`], as a tokio listener.
fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    UnixListener::from_std(hutch_proto::unix_socket::bind_private(path)?)
}
