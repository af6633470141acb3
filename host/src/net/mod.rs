//! The guest's network under the host's control (issue 16).
//!
//! A guest has no route out of its own (QEMU guests get no NIC; see
//! docs/network.md for Tart and Lima). Its agent listens on the guest's loopback and
//! carries every connection there, unread, to a per-VM process on the host,
//! `hutch net --name NAME`, which is an HTTP proxy with a policy:
//!
//! - [`policy`]: which hosts and ports may be reached, and by which rule
//!   (the allow/deny lists of `crate::config::network`, their host patterns
//!   in `crate::config::pattern`);
//! - [`live`], [`served`], [`control`]: the policy changed while the VM runs
//!   (`hutch allow`/`deny`, `hutch up` after an edit), through the process's
//!   control socket; [`ask`]: `mode = "ask"`, a person decides; [`active`]:
//!   the open connections a change cuts;
//! - [`route`]: `tcp://` rules, a way out for programs that ignore proxies,
//!   and [`tcp`], which serves a connection that comes in on one;
//! - [`address`]: which resolved addresses are never connected to unless a
//!   rule names them (loopback, private, link-local, metadata);
//! - [`upstream`]: resolving on the host and connecting to a checked address,
//!   directly or through the host's own proxy;
//! - [`proxy`]: one guest connection served as an HTTP proxy (CONNECT and
//!   absolute-URI requests), answering refusals with a 403 that says which
//!   configuration line would allow the request, over [`context`] (what
//!   every connection is served with), [`exchange`] (one request sent on),
//!   [`relay`] (a tunnel's bytes) and [`body`];
//! - [`sni`], [`ca`], [`tls`], [`intercept`]: for hosts that have secrets
//!   only, TLS is terminated with a per-VM CA and re-originated upstream with
//!   full verification against the host's trust store;
//! - [`secrets`] and [`scope`]: placeholders the guest sees, real values only
//!   on the host, sent only where their scope says;
//! - [`mirrors`]: the package mirrors `hutch image prepare`'s setup hook reaches;
//! - [`daemon`]: the process itself, started by `up`, stopped by `down`/`rm`.

pub mod active;
pub mod address;
pub mod ask;
pub mod body;
pub mod ca;
pub mod chunked;
pub mod context;
pub mod control;
pub mod daemon;
pub mod exchange;
pub mod exec;
pub mod guest_io;
pub mod intercept;
pub mod link;
pub mod live;
pub mod mirrors;
pub mod policy;
pub mod proxy;
pub mod relay;
pub mod route;
pub mod scope;
pub mod secrets;
pub mod served;
pub mod sni;
pub mod tcp;
pub mod tls;
pub mod upstream;

use std::path::{Path, PathBuf};

/// The capability an agent announces when it has the egress pipe.
pub const CAPABILITY: &str = "egress";

/// The capability of an agent that listens for `tcp://` routes too.
pub const ROUTES_CAPABILITY: &str = "egress.routes";

/// The capability of an agent that brings up the link to the proxy.
pub const LINK_CAPABILITY: &str = "egress.link";

/// The folder in a VM's state folder that holds its network files: the
/// policy, the CA and its key, the placeholders, the process's log and lock.
pub fn net_dir(vm_dir: &Path) -> PathBuf {
    vm_dir.join("net")
}

/// Why the network of a VM could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What hutch was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file of the VM's network state is unreadable.
    #[error("{path} is unreadable: {source}")]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: serde_json::Error,
    },
    /// A rule of the policy does not parse (the files were checked when read,
    /// so this means the policy file was edited by hand).
    #[error("bad rule in the network policy: {0}")]
    Policy(String),
    /// Making or loading the VM's CA, or a TLS setting, failed.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// The agent cannot carry the guest's connections.
    #[error("the agent of VM {name} cannot carry the guest's network: {why}")]
    Agent {
        /// The VM.
        name: String,
        /// Why (too old, or its listener could not be bound).
        why: String,
    },
    /// The VM's network process did not start.
    #[error("the network process of VM {name} did not start: {source}")]
    Daemon {
        /// The VM.
        name: String,
        /// What went wrong (the end of its log, when there is one).
        source: crate::daemon::DaemonError,
    },
    /// The running network process could not be told (`hutch allow`, `deny`).
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// A rule could not be saved into a configuration file.
    #[error(transparent)]
    Save(#[from] crate::config::edit::EditError),
    /// The VM's record cannot be read (the network process's own start).
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The VM's agent cannot be reached (the network process's own start).
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
}

impl NetError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> NetError {
        NetError::Io { what: what.into(), source }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            NetError::Io { .. } | NetError::Tls(_) => None,
            NetError::BadState { .. } | NetError::Policy(_) => {
                Some("`hutch up` writes these files again; `hutch reset NAME` starts the VM over".into())
            }
            NetError::Agent { .. } => Some(
                "update the agent in the guest image (`cargo xtask image`, or `hutch agent install`), or start without a network: --network none"
                    .into(),
            ),
            NetError::Daemon { .. } => Some("its log is net/net.log in the VM's state folder; `hutch up` tries again".into()),
            NetError::Control(control::ControlError::NotRunning { .. }) => Some(
                "is the VM running, with its network on? `hutch up` starts it; `--save` writes the rule for its next start".into(),
            ),
            NetError::Control(_) => Some("its log is net/net.log in the VM's state folder".into()),
            NetError::Save(_) => Some("fix the file, or leave out --save to change the running VM only".into()),
            NetError::State(e) => e.hint(),
            NetError::Connect(e) => e.hint(),
        }
    }
}

/// Writes `path` whole (a temporary file renamed into place), readable by
/// this user only: the network folder holds the CA's key.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), NetError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let failed = |what: &str, e| NetError::io(format!("{what} {}", path.display()), e);
    let dir = path.parent().ok_or_else(|| failed("writing", std::io::Error::other("no parent folder")))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| failed("creating the folder of", e))?;
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(|e| failed("writing", e))?;
    file.write_all(contents).map_err(|e| failed("writing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| failed("replacing", e))
}
