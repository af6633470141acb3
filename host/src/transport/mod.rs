//! Connecting to an agent: one function, [`connect`], for every address scheme.
//!
//! Each scheme is a way to get a byte stream to the agent's gRPC server; tonic
//! runs HTTP/2 over whichever stream the connector returns, so the rest of
//! hutch never knows which transport it is on.

mod call;
mod checked;
mod http2;
mod hvsock;
pub mod unix;

use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hutch_proto::addr::Addr;
use hutch_proto::v1::agent_client::AgentClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Uri;

pub use call::{CallError, REFUSED};
pub use http2::Connection;

use crate::untrusted::deadline::{self, Deadline};

/// The service calls go through: the connection, with the bearer token
/// added to every call when one is set.
pub type Channel = InterceptedService<Connection, BearerToken>;

/// A connected agent client: the generated client (through `Deref`), the
/// calls whose answers are counted before decoding (`checked`), and who
/// the agent is, for the messages of a call that fails or goes unanswered.
#[derive(Clone)]
pub struct Client {
    agent: AgentClient<Channel>,
    channel: Channel,
    peer: Arc<str>,
}

impl Client {
    /// A client on `connection`; `peer` names the agent in messages
    /// ("VM web's agent").
    pub fn new(connection: Connection, token: BearerToken, peer: impl Into<Arc<str>>) -> Client {
        let channel = InterceptedService::new(connection, token);
        Client { agent: AgentClient::with_origin(channel.clone(), Uri::from_static("http://agent")), channel, peer: peer.into() }
    }

    /// The same client, naming its agent `peer`.
    pub fn named(mut self, peer: impl Into<Arc<str>>) -> Client {
        self.peer = peer.into();
        self
    }

    /// Who the agent is, as messages name it.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The deadline of a call to this agent (see `crate::untrusted::deadline`).
    pub fn deadline(&self) -> Deadline {
        Deadline::for_peer(self.peer.clone())
    }
}

impl Deref for Client {
    type Target = AgentClient<Channel>;
    fn deref(&self) -> &Self::Target {
        &self.agent
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.agent
    }
}

/// Why hutch could not reach an agent.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Nothing exists at the socket path.
    #[error("no agent socket at {0}")]
    NoSocket(String),
    /// The endpoint exists but nothing accepts connections there.
    #[error("nothing is listening at {0}")]
    Refused(String),
    /// The OS denied access to the socket.
    #[error("permission denied connecting to {0}")]
    PermissionDenied(String),
    /// The hybrid-vsock proxy would not connect to the guest port.
    #[error("{path} would not connect to guest port {port}: {reply}")]
    HvsockRefused {
        /// The proxy's Unix socket.
        path: String,
        /// The guest port asked for.
        port: u32,
        /// What the proxy answered (or that it closed the connection).
        reply: String,
    },
    /// A TCP address without a token: the agent would refuse every call.
    #[error("{0} needs a token: pass --token-file FILE (or set HUTCH_TOKEN_FILE)")]
    TokenRequired(String),
    /// The token file could not be read or is not a valid header value.
    #[error("cannot use token file {path}: {why}")]
    BadToken {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Nothing answered in time (a socket whose owner never accepts, a
    /// vsock proxy that never says OK).
    #[error("connecting to {addr} took longer than {} s", after.as_secs_f64())]
    TimedOut {
        /// The address.
        addr: String,
        /// How long hutch waited.
        after: Duration,
    },
    /// Any other connection failure.
    #[error("cannot connect to {addr}: {source}")]
    Other {
        /// The address.
        addr: String,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TransportError {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            TransportError::NoSocket(a) | TransportError::Refused(a) => {
                format!("is the agent running? Start one with `hutch-agent --listen {a}`, or point --addr/HUTCH_ADDR at a running one")
            }
            TransportError::PermissionDenied(_) => {
                "the agent's socket is private to the user that started it (mode 0600): run hutch as that user".into()
            }
            TransportError::HvsockRefused { .. } => {
                "the VM is up but its agent is not listening on that vsock port yet (still booting?) or has died".into()
            }
            TransportError::TimedOut { .. } => format!(
                "is the VM overloaded or stuck? `hutch reset` restarts a VM; to wait longer, set {} or `connect` under [timeouts] in the configuration",
                deadline::CONNECT_ENV
            ),
            TransportError::TokenRequired(_) | TransportError::BadToken { .. } => {
                "write the agent's token (the one given to `hutch-agent --token-file`) into a file only you can read".into()
            }
            TransportError::Other { .. } => {
                "check the address (unix:///PATH, tcp://HOST:PORT, vsock://CID:PORT, hvsock:///PATH:PORT)".into()
            }
        }
    }
}

/// Adds `authorization: Bearer …` to each call when a token is configured.
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// Reads the token from `path` (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, TransportError> {
        let bad = |why: String| TransportError::BadToken { path: path.display().to_string(), why };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        let value = format!("Bearer {token}").parse().map_err(|_| bad("the token has characters not allowed in a header".into()))?;
        Ok(Self(Some(value)))
    }
}

impl BearerToken {
    /// The token in `path` when there is one (a record's or a flag's token
    /// file), else none.
    pub fn load(path: Option<&Path>) -> Result<Self, TransportError> {
        path.map_or_else(|| Ok(BearerToken::default()), BearerToken::from_file)
    }

    /// The `authorization` header's value, when a token is set.
    pub fn header_value(&self) -> Option<tonic::codegen::http::HeaderValue> {
        self.0.as_ref().and_then(|value| tonic::codegen::http::HeaderValue::from_bytes(value.as_encoded_bytes()).ok())
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to the agent at `addr`. TCP requires a token.
pub async fn connect(addr: &Addr, token: BearerToken) -> Result<Client, TransportError> {
    if matches!(addr, Addr::Tcp { .. }) && token.0.is_none() {
        return Err(TransportError::TokenRequired(addr.to_string()));
    }
    let stream = open_stream_within(addr).await?;
    let connection = Connection::handshake(stream).await.map_err(|e| classify(addr, e))?;
    // The origin only names the HTTP/2 authority; the stream decides where bytes go.
    Ok(Client::new(connection, token, format!("the agent at {addr}")))
}

/// [`open_stream`] within the connect deadline.
async fn open_stream_within(addr: &Addr) -> Result<Box<dyn Stream>, TransportError> {
    let after = deadline::current().connect;
    match tokio::time::timeout(after, open_stream(addr)).await {
        Ok(opened) => opened.map_err(|e| classify(addr, e)),
        Err(_) => Err(TransportError::TimedOut { addr: addr.to_string(), after }),
    }
}

/// Opens a bare HTTP/2 connection to the agent at `addr` for a long-lived
/// user that adds the token itself (the multiplexer, see `crate::mux`); the
/// returned future drives it (see [`Connection::open`]).
pub async fn open(
    addr: &Addr,
    token: &BearerToken,
    keepalive: Duration,
) -> Result<(Connection, impl Future<Output = ()> + Send + 'static), TransportError> {
    if matches!(addr, Addr::Tcp { .. }) && token.0.is_none() {
        return Err(TransportError::TokenRequired(addr.to_string()));
    }
    let stream = open_stream_within(addr).await?;
    Connection::open(stream, Some(keepalive)).await.map_err(|e| classify(addr, e))
}

/// Any byte stream tonic can run HTTP/2 over.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn open_stream(addr: &Addr) -> io::Result<Box<dyn Stream>> {
    Ok(match addr {
        Addr::Unix(path) => Box::new(unix::connect(path).await?),
        Addr::Tcp { host, port } => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            stream.set_nodelay(true)?;
            Box::new(stream)
        }
        Addr::Vsock { cid, port } => Box::new(tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?),
        Addr::Hvsock { path, port } => Box::new(hvsock::connect(path, *port).await?),
    })
}

/// Turns a connection error back into the OS error that caused it.
fn classify<E: std::error::Error + Send + Sync + 'static>(addr: &Addr, e: E) -> TransportError {
    let shown = addr.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<hvsock::Refused>() {
            return TransportError::HvsockRefused { path: refused.path.clone(), port: refused.port, reply: refused.reply.clone() };
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(refused) = io.get_ref().and_then(|inner| inner.downcast_ref::<hvsock::Refused>()) {
                return TransportError::HvsockRefused { path: refused.path.clone(), port: refused.port, reply: refused.reply.clone() };
            }
            match io.kind() {
                io::ErrorKind::NotFound => return TransportError::NoSocket(shown),
                io::ErrorKind::ConnectionRefused => return TransportError::Refused(shown),
                io::ErrorKind::PermissionDenied => return TransportError::PermissionDenied(shown),
                _ => {}
            }
        }
        source = err.source();
    }
    TransportError::Other { addr: shown, source: Box::new(e) }
}
