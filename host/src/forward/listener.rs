//! The host side's listeners: bound all at once before anything is served (so
//! a busy port fails the start, naming the port), then an accept loop per
//! port that gives each connection its own tunnel task.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::{ForwardError, PortMapping, tunnel};
use crate::transport::Client;

/// After a failed accept (out of descriptors, ...), wait this long before the
/// next, so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A host port bound on 127.0.0.1, not yet served.
#[derive(Debug)]
pub struct Bound {
    mapping: PortMapping,
    listener: std::net::TcpListener,
}

impl Bound {
    /// Which ports this listener joins.
    pub fn mapping(&self) -> PortMapping {
        self.mapping
    }
}

impl fmt::Display for Bound {
    /// The line `hutch forward` prints per listener: `127.0.0.1:8080 → guest :3000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "127.0.0.1:{} → guest :{}", self.mapping.host, self.mapping.guest)
    }
}

/// Binds 127.0.0.1:HOSTPORT for every mapping, or fails naming the first port
/// that cannot be bound (nothing stays bound then).
pub fn bind(mappings: &[PortMapping]) -> Result<Vec<Bound>, ForwardError> {
    let mut seen = HashSet::new();
    let mut bound = Vec::with_capacity(mappings.len());
    for &mapping in mappings {
        if !seen.insert(mapping.host) {
            return Err(ForwardError::Duplicate(mapping.host));
        }
        let failed = |source: io::Error| match source.kind() {
            io::ErrorKind::AddrInUse => ForwardError::PortInUse(mapping.host),
            _ => ForwardError::Bind { port: mapping.host, source },
        };
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, mapping.host)).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        bound.push(Bound { mapping, listener });
    }
    Ok(bound)
}

/// Listeners being served. Dropping it closes them and aborts every tunnel.
pub struct Serving {
    _tasks: JoinSet<()>,
}

/// Starts serving `bound` through the agent behind `client`; must be called
/// from within the tokio runtime.
pub fn serve(bound: Vec<Bound>, client: &Client) -> Result<Serving, ForwardError> {
    let mut tasks = JoinSet::new();
    for Bound { mapping, listener } in bound {
        let listener = TcpListener::from_std(listener).map_err(|source| ForwardError::Bind { port: mapping.host, source })?;
        tasks.spawn(accept_loop(listener, mapping, client.clone()));
    }
    Ok(Serving { _tasks: tasks })
}

/// Accepts connections on one listener forever, one tunnel task each; the
/// tunnels end with the loop (their `JoinSet` aborts them when dropped).
async fn accept_loop(listener: TcpListener, mapping: PortMapping, client: Client) {
    let mut tunnels = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    tunnels.spawn(tunnel::run(client.clone(), socket, mapping));
                }
                Err(e) => {
                    eprintln!("hutch: accepting a connection on 127.0.0.1:{} failed: {e}", mapping.host);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished tunnels so the set does not grow.
            Some(_) = tunnels.join_next() => {}
        }
    }
}
