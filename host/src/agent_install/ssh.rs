//! One SSH connection to the guest (russh): host key checked against
//! [`KnownHosts`], login with ssh-agent keys, a key file or a password, then
//! commands (with stdin, for uploads) and forwarded Unix-socket streams.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::{self, Algorithm, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use super::error::InstallError;
use super::known_hosts::{self, KnownHosts, Verdict};

/// How long the TCP connect plus key exchange may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to log in.
#[derive(Clone, Debug)]
pub struct Dest {
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// The name its host key is pinned under instead of `host:port`: a hutch
    /// VM's (see [`known_hosts::vm_entry`]), whose address and forwarded port
    /// change from boot to boot and get reused by other VMs.
    pub known_as: Option<String>,
}

impl Dest {
    /// `host:port`, for messages.
    pub fn shown(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How to authenticate.
pub enum Credentials {
    /// Keys held by the ssh-agent at `SSH_AUTH_SOCK`, else the default unencrypted key files.
    Agent,
    /// One private key file (`--identity`).
    Identity(PathBuf),
    /// A password (`--password`).
    Password(String),
}

/// The russh handler: only checks the host key, pinned under `name`.
struct Verifier {
    name: String,
    known: KnownHosts,
}

/// The handler's error: russh's own, or a refused host key.
#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostKey(InstallError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for Verifier {
    type Error = HandlerError;

    async fn check_server_key(&mut self, presented: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::new(cert.public_key().clone(), ""),
        };
        match self.known.check_name(&self.name, &key).map_err(HandlerError::HostKey)? {
            Verdict::Known => tracing::debug!("host key of {} is known", self.name),
            Verdict::Learned => eprintln!(
                "hutch: first connection to {}: recorded its host key ({}) in {}",
                self.name,
                known_hosts::describe(&key),
                self.known.path().display()
            ),
        }
        Ok(true)
    }
}

/// What a remote command did.
#[derive(Debug, Default)]
pub struct RemoteOutput {
    /// Exit status, if the server reported one.
    pub code: Option<u32>,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

impl RemoteOutput {
    /// The end of stderr (else stdout), for error messages.
    pub fn tail(&self) -> String {
        let text = if self.stderr.is_empty() { &self.stdout } else { &self.stderr };
        let text = String::from_utf8_lossy(text);
        let lines: Vec<&str> = text.trim().lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

/// A logged-in SSH connection.
pub struct Session {
    handle: Arc<Handle<Verifier>>,
    dest: Dest,
}

impl Session {
    /// Connects, checks the host key and logs in.
    pub async fn connect(dest: &Dest, known: &KnownHosts, credentials: &Credentials) -> Result<Session, InstallError> {
        let mut handle = tokio::time::timeout(CONNECT_TIMEOUT, handshake(dest, known))
            .await
            .map_err(|_| InstallError::Connect { dest: dest.shown(), source: std::io::ErrorKind::TimedOut.into() })??;
        login(&mut handle, dest, credentials).await?;
        Ok(Session { handle: Arc::new(handle), dest: dest.clone() })
    }

    /// The destination.
    pub fn dest(&self) -> &Dest {
        &self.dest
    }

    /// Runs `command` (through the remote user's shell), feeding it `stdin`
    /// then EOF, and collects its output and exit status.
    pub async fn run(&self, command: &str, stdin: Option<&[u8]>) -> Result<RemoteOutput, InstallError> {
        tracing::debug!("ssh {}: {command}", self.dest.shown());
        let channel = self.handle.channel_open_session().await.map_err(|e| self.ssh_error(e))?;
        channel.exec(true, command).await.map_err(|e| self.ssh_error(e))?;
        let (mut reader, writer) = channel.split();
        let feed = async {
            if let Some(data) = stdin {
                writer.data(data).await?;
            }
            writer.eof().await
        };
        let collect = async {
            let mut out = RemoteOutput::default();
            while let Some(message) = reader.wait().await {
                match message {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => out.code = Some(exit_status),
                    _ => {}
                }
            }
            out
        };
        let (fed, out) = tokio::join!(feed, collect);
        // A command that exits without reading all of stdin closes the channel
        // under the writer: its exit status says more than the write error.
        if let Err(e) = fed
            && out.code.is_none()
        {
            return Err(self.ssh_error(e));
        }
        Ok(out)
    }

    /// Runs `command` and fails with `what` unless it exits 0; returns its stdout.
    pub async fn check(&self, what: &str, command: &str, stdin: Option<&[u8]>) -> Result<String, InstallError> {
        let out = self.run(command, stdin).await?;
        if out.code != Some(0) {
            return Err(InstallError::Remote { what: what.to_owned(), code: out.code.map_or(-1, i64::from), output: out.tail() });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A byte stream to the Unix socket `path` on the guest (OpenSSH's
    /// `direct-streamlocal@openssh.com`, what `ssh -L LOCAL:/path` uses).
    pub async fn open_socket(&self, path: &str) -> Result<russh::ChannelStream<client::Msg>, russh::Error> {
        Ok(self.handle.channel_open_direct_streamlocal(path).await?.into_stream())
    }

    /// A shareable opener of streams to `path`, for a gRPC connector.
    pub fn socket_opener(&self, path: &str) -> SocketOpener {
        SocketOpener { handle: self.handle.clone(), path: path.to_owned() }
    }

    /// Says goodbye to the server.
    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }

    fn ssh_error(&self, e: russh::Error) -> InstallError {
        ssh_error(&self.dest, e)
    }
}

/// Opens streams to one guest Unix socket over the session (cheap to clone).
#[derive(Clone)]
pub struct SocketOpener {
    handle: Arc<Handle<Verifier>>,
    path: String,
}

impl SocketOpener {
    /// A new stream to the socket.
    pub async fn open(&self) -> std::io::Result<russh::ChannelStream<client::Msg>> {
        let channel = self.handle.channel_open_direct_streamlocal(self.path.as_str()).await.map_err(|e| match e {
            russh::Error::ChannelOpenFailure(reason) => {
                std::io::Error::other(format!("the SSH server would not open {}: {reason:?}", self.path))
            }
            other => std::io::Error::other(other.to_string()),
        })?;
        Ok(channel.into_stream())
    }
}

/// Logs in with the first credential the server accepts.
async fn login(handle: &mut Handle<Verifier>, dest: &Dest, credentials: &Credentials) -> Result<(), InstallError> {
    let user = dest.user.clone();
    let (ok, tried, password) = match credentials {
        Credentials::Password(password) => {
            let result = handle.authenticate_password(&user, password).await.map_err(|e| ssh_error(dest, e))?;
            (result.success(), "password".to_owned(), true)
        }
        Credentials::Identity(path) => {
            let key = load_key(path)?;
            (with_key(handle, &user, key).await.map_err(|e| ssh_error(dest, e))?, format!("key {}", path.display()), false)
        }
        Credentials::Agent => match AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent
                    .request_identities()
                    .await
                    .map_err(|e| InstallError::NoCredentials(format!("cannot list ssh-agent's keys: {e}")))?;
                if identities.is_empty() {
                    return Err(InstallError::NoCredentials("ssh-agent holds no keys".into()));
                }
                let mut ok = false;
                for identity in &identities {
                    let key = identity.public_key().into_owned();
                    let hash = rsa_hash(handle, key.algorithm()).await.map_err(|e| ssh_error(dest, e))?;
                    match handle.authenticate_publickey_with(&user, key, hash, &mut agent).await {
                        Ok(result) if result.success() => {
                            ok = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!("ssh-agent could not sign with {}: {e}", identity.comment()),
                    }
                }
                (ok, format!("{} key(s) from ssh-agent", identities.len()), false)
            }
            Err(e) => {
                tracing::debug!("no ssh-agent ({e}); trying the default key files");
                let files = default_key_files();
                if files.is_empty() {
                    return Err(InstallError::NoCredentials(
                        "SSH_AUTH_SOCK is not set (no ssh-agent) and there is no unencrypted ~/.ssh/id_ed25519, id_ecdsa or id_rsa".into(),
                    ));
                }
                let mut ok = false;
                for (_, key) in &files {
                    if with_key(handle, &user, key.clone()).await.map_err(|e| ssh_error(dest, e))? {
                        ok = true;
                        break;
                    }
                }
                let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
                (ok, format!("key(s) {}", names.join(", ")), false)
            }
        },
    };
    if ok { Ok(()) } else { Err(InstallError::AuthRefused { user, dest: dest.shown(), tried, password }) }
}

async fn handshake(dest: &Dest, known: &KnownHosts) -> Result<Handle<Verifier>, InstallError> {
    let stream = tokio::net::TcpStream::connect((dest.host.as_str(), dest.port))
        .await
        .map_err(|source| InstallError::Connect { dest: dest.shown(), source })?;
    let _ = stream.set_nodelay(true);
    let config = Arc::new(client::Config { keepalive_interval: Some(Duration::from_secs(15)), ..Default::default() });
    let name = dest.known_as.clone().unwrap_or_else(|| known_hosts::entry_name(&dest.host, dest.port));
    let verifier = Verifier { name, known: known.clone() };
    client::connect_stream(config, stream, verifier).await.map_err(|e| match e {
        HandlerError::HostKey(e) => e,
        HandlerError::Ssh(e) => ssh_error(dest, e),
    })
}

fn ssh_error(dest: &Dest, source: russh::Error) -> InstallError {
    InstallError::Ssh { dest: dest.shown(), source }
}

/// Logs in with one private key; true when accepted.
async fn with_key(handle: &mut Handle<Verifier>, user: &str, key: keys::PrivateKey) -> Result<bool, russh::Error> {
    let hash = rsa_hash(handle, key.algorithm()).await?;
    let result = handle.authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash)).await?;
    Ok(result.success())
}

/// For RSA keys, the best signature hash the server accepts (asking costs a
/// round trip, so other key types skip it).
async fn rsa_hash(handle: &Handle<Verifier>, algorithm: Algorithm) -> Result<Option<keys::HashAlg>, russh::Error> {
    if matches!(algorithm, Algorithm::Rsa { .. }) { Ok(handle.best_supported_rsa_hash().await?.flatten()) } else { Ok(None) }
}

fn load_key(path: &Path) -> Result<keys::PrivateKey, InstallError> {
    keys::load_secret_key(path, None).map_err(|e| InstallError::Key {
        path: path.to_path_buf(),
        why: match e {
            keys::Error::KeyIsEncrypted => "it is encrypted with a passphrase, which hutch does not ask for".into(),
            other => other.to_string(),
        },
    })
}

/// The usual unencrypted private keys in `~/.ssh`, as ssh would try them.
fn default_key_files() -> Vec<(PathBuf, keys::PrivateKey)> {
    let Some(home) = std::env::var_os("HOME") else { return Vec::new() };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| PathBuf::from(&home).join(".ssh").join(name))
        .filter_map(|path| keys::load_secret_key(&path, None).ok().map(|key| (path, key)))
        .collect()
}
