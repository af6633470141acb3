//! Port forwarding (`hutch forward`, `--forward` on `up`/`run`): listeners on
//! the host's 127.0.0.1 whose connections are tunnelled to ports in the guest
//! through the agent, so a dev server started in the guest is reachable from
//! the host's browser.
//!
//! - [`mapping`] parses `HOSTPORT[:GUESTPORT]`;
//! - [`listener`] binds every host port first (a busy port fails the start),
//!   then accepts, serving connections concurrently;
//! - [`tunnel`] carries one TCP connection over one `Forward` gRPC stream;
//! - [`detached`] runs `hutch forward` in the background for `hutch up` and
//!   stops it on `down`/`rm`.

pub mod detached;
pub mod listener;
pub mod mapping;
pub mod tunnel;

pub use listener::{Bound, Serving, bind, serve};
pub use mapping::PortMapping;

/// The capability an agent announces when it serves `Forward`.
pub const CAPABILITY: &str = "forward";

/// Why forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Something already listens on the host port.
    #[error("host port {0} is already in use")]
    PortInUse(u16),
    /// The host port could not be bound for another reason.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The host port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
    /// The same host port was given twice.
    #[error("host port {0} is given twice")]
    Duplicate(u16),
    /// The agent is too old to forward ports.
    #[error("the agent at {addr} (version {version}) cannot forward ports")]
    Unsupported {
        /// The agent's address.
        addr: String,
        /// Its version.
        version: String,
    },
    /// The agent cannot be reached.
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    /// The agent failed the call that checks it can forward.
    #[error(transparent)]
    Call(#[from] crate::transport::CallError),
    /// The background forwarder of `hutch up` did not start.
    #[error("the port forwarder for VM {name} did not start: {why}")]
    Detached {
        /// The VM.
        name: String,
        /// What went wrong (the end of its log, when there is one).
        why: String,
    },
}

impl ForwardError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ForwardError::PortInUse(port) => Some(format!(
                "stop what listens there (`ss -ltnp 'sport = :{port}'` shows it), or pick another host port: HOSTPORT:GUESTPORT"
            )),
            ForwardError::Bind { .. } | ForwardError::Duplicate(_) => None,
            ForwardError::Unsupported { .. } => {
                Some("update the agent in the guest image (`cargo xtask image`), then `hutch reset`".into())
            }
            ForwardError::Connect(e) => e.hint(),
            ForwardError::Call(e) => Some(e.hint()),
            ForwardError::Detached { .. } => Some("run `hutch forward --name NAME HOSTPORT[:GUESTPORT]…` in a terminal to see why".into()),
        }
    }
}

/// Serves `bound` through `target`'s agent (checked first: it must answer and
/// support forwarding). Forwarding lasts as long as the returned value.
pub async fn start(target: &crate::target::Target, bound: Vec<Bound>) -> Result<Serving, ForwardError> {
    let client = target.connect().await?;
    let info = client.describe().await?;
    if !info.capabilities.iter().any(|c| c == CAPABILITY) {
        return Err(ForwardError::Unsupported { addr: target.addr_text(), version: crate::untrusted::text::shown(&info.version) });
    }
    serve(bound, &client)
}
