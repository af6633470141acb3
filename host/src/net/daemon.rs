//! `hutch net --name NAME`: a VM's network process, and starting and
//! stopping it.
//!
//! One per VM with its network on, living as long as the VM: `up` and `run`
//! start it (and restart it when the VM was started afresh, or what it
//! cannot change in place changed: the guest port, the CAs the guest
//! trusts, which secrets exist), `down`, `rm` and `reset` stop it. Rules,
//! the mode, secrets' scopes and values change in place, through its
//! control socket ([`super::control`]): `hutch up` after an edit, `hutch
//! allow`/`deny`, answers to questions. It is separate from the
//! multiplexer, which is optional (`HUTCH_MUX=0`) and leaves when idle; the
//! network must not. It is a `crate::daemon` that claims its own lock
//! (`net/net.log`, pid in `net/net.pid`), and says `ready` in its log once
//! the guest's listener is up, which `up` waits for.
//!
//! It keeps one HTTP/2 connection to the agent (pinged, so a frozen VM is
//! noticed), holds the `EgressListen` call (made again, with the new
//! routes, when the `tcp://` rules change), and keeps [`WAITING`]
//! `EgressAccept` streams open so a guest connection starts without a round
//! trip; at most [`MAX_CONNECTIONS`] guest connections are served at once
//! (beyond that they wait in the guest's backlog). When the agent connection
//! ends while the VM still runs (the agent restarted), it reconnects.
//!
//! On QEMU it also serves the VM's link ([`super::link`]) for its whole
//! life, and asks the agent to bring the guest's end up and point guest
//! programs through it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hutch_proto::v1::egress_listen_response::Kind as ListenKind;
use hutch_proto::v1::forward_request::Kind as RequestKind;
use hutch_proto::v1::forward_response::Kind;
use hutch_proto::v1::{EgressAccept, EgressLink, EgressListenRequest, EgressListenResponse, EgressRoute, ForwardRequest, ForwardResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::active::Active;
use super::ask::Asks;
use super::ca::Authority;
use super::context::Context;
use super::control::Request;
use super::guest_io::GuestIo;
use super::live::LiveEdits;
use super::policy::{POLICY_FILE, PolicyFile};
use super::proxy;
use super::route::Route;
use super::secrets::Secrets;
use super::served::Served;
use super::tls::HostRoots;
use super::upstream::Upstream;
use super::{NetError, net_dir};
use crate::config::network::{Mode, NetworkConfig};
use crate::daemon::Daemon;
use crate::state::{StateDir, VmName, VmRecord};
use crate::transport::{self, BearerToken, Client};
use crate::untrusted::text;

/// What it was started with (policy, secrets' fingerprints), to know when to restart it.
const INPUTS_FILE: &str = "inputs.json";
/// The line it writes to its log once the guest's listener is up.
pub const READY: &str = "ready";

/// Accept streams kept waiting in the agent.
pub const WAITING: usize = 4;
/// Guest connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Agent pings while idle, and how long an unanswered one may take.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// How long `up` waits for the process to say it is ready.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long it has to leave after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Problems of the guest's configuration the log shows (one line each).
const PROBLEMS_SHOWN: usize = 32;
/// Requests that may wait on one accept stream: with chunks of up to
/// [`super::guest_io::DOWN_CHUNK`], at most 512 KiB per guest connection.
const REQUEST_QUEUE: usize = 2;

/// The network process of the VM whose folder is `vm_dir`.
pub fn daemon(vm_dir: &Path) -> Daemon {
    Daemon::new(&net_dir(vm_dir), "net")
}

/// Makes VM `name`'s network what `config` says: no process for
/// `mode = "none"`; otherwise a process serving this policy. A running
/// process takes a new policy and new secret values in place (its open
/// connections stay); it is restarted when `fresh` (the VM was just
/// started: its agent has no listener yet, and the live changes of the old
/// VM are forgotten) or when what changed cannot change in place. `project`
/// is the workspace, where a refusal tells the user to add rules.
pub fn ensure(state: &StateDir, name: &VmName, config: &NetworkConfig, project: Option<&Path>, fresh: bool) -> Result<(), NetError> {
    begin(state, name, config, project, fresh)?.map_or(Ok(()), Starting::ready)
}

/// [`ensure`] up to starting the process: returns it while it sets up the
/// guest's listener (when one had to be started), so the caller can do
/// something else meanwhile, then wait with [`Starting::ready`].
pub fn begin(
    state: &StateDir,
    name: &VmName,
    config: &NetworkConfig,
    project: Option<&Path>,
    fresh: bool,
) -> Result<Option<Starting>, NetError> {
    let vm_dir = state.vm_dir(name);
    let net = net_dir(&vm_dir);
    let process = daemon(&vm_dir);
    if config.mode.value == Mode::None {
        process.terminate(STOP_GRACE);
        let _ = std::fs::remove_file(net.join(INPUTS_FILE));
        LiveEdits::clear(&net);
        return Ok(None);
    }
    if fresh {
        LiveEdits::clear(&net);
    }
    let policy = PolicyFile::new(config, project);
    let inputs = inputs(&net, &policy)?;
    let same = std::fs::read(net.join(INPUTS_FILE)).is_ok_and(|old| old == inputs.as_bytes());
    if same && !fresh && process.running() {
        return Ok(None);
    }
    let text = serde_json::to_string_pretty(&policy).map_err(|e| NetError::Policy(e.to_string()))?;
    if !fresh && process.running() && PolicyFile::load(&net).is_ok_and(|old| old.changes_in_place(&policy)) {
        let request = Request::Reload { policy: policy.clone(), values: env_values(&policy) };
        match super::control::call_blocking(&net, &request) {
            Ok(_) => {
                super::write_private(&net.join(POLICY_FILE), text.as_bytes())?;
                super::write_private(&net.join(INPUTS_FILE), inputs.as_bytes())?;
                return Ok(None);
            }
            Err(e) => eprintln!("hutch: the network process of {name} did not take the new policy ({e}); starting it again"),
        }
    }
    process.terminate(STOP_GRACE);
    super::write_private(&net.join(POLICY_FILE), text.as_bytes())?;
    super::write_private(&net.join(INPUTS_FILE), inputs.as_bytes())?;
    spawn(state, name, &process).map(Some)
}

/// A network process started and not yet known to serve (see [`begin`]).
pub struct Starting {
    name: VmName,
    vm_dir: std::path::PathBuf,
    spawned: crate::daemon::Spawned,
}

impl Starting {
    /// Waits until it says it serves the guest; stops it if it does not.
    pub fn ready(self) -> Result<(), NetError> {
        if let Err(e) = self.spawned.wait_until(START_WAIT, |news| news.lines().any(|l| l == READY)) {
            daemon(&self.vm_dir).terminate(STOP_GRACE);
            let _ = std::fs::remove_file(net_dir(&self.vm_dir).join(INPUTS_FILE));
            return Err(NetError::Daemon { name: self.name.to_string(), source: e });
        }
        Ok(())
    }
}

/// The values of `policy`'s `from_env` secrets in this process's environment, by secret name.
fn env_values(policy: &PolicyFile) -> BTreeMap<String, String> {
    policy
        .secrets
        .iter()
        .filter_map(|(name, s)| {
            s.from_env.as_ref().and_then(|var| std::env::var(var).ok()).filter(|v| !v.is_empty()).map(|v| (name.clone(), v))
        })
        .collect()
}

/// Gives a VM that was just created again under its old name (`hutch
/// reset`) the network it had: the policy its network process last served
/// (flags of the `up` that started it included), or none when it had none
/// (`--network none`). The configuration is not read again: a reset keeps
/// the VM's settings, and `hutch up` applies edited ones as always.
pub fn restore(state: &StateDir, name: &VmName) -> Result<(), NetError> {
    let vm_dir = state.vm_dir(name);
    let process = daemon(&vm_dir);
    process.terminate(STOP_GRACE);
    if !net_dir(&vm_dir).join(INPUTS_FILE).exists() {
        return Ok(());
    }
    start(state, name, &process)
}

/// Gives `child`, a VM just forked from `parent` (`hutch fork`), the
/// network `parent` has: the policy its network process serves (none when
/// it has none), and nothing else of it: the child's placeholders, CA and
/// audit log are its own, made when its network process starts (now).
pub fn inherit(state: &StateDir, parent: &VmName, child: &VmName) -> Result<(), NetError> {
    let (from, to) = (net_dir(&state.vm_dir(parent)), net_dir(&state.vm_dir(child)));
    for file in [POLICY_FILE, INPUTS_FILE] {
        match std::fs::read(from.join(file)) {
            Ok(bytes) => super::write_private(&to.join(file), &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(NetError::io(format!("reading {}", from.join(file).display()), e)),
        }
    }
    restore(state, child)
}

/// Starts the network process again when VM `name` had one and it is gone
/// (killed, crashed) while the VM runs: commands that use a running VM
/// (`exec`, `shell`) call it, so the guest does not lose its network until
/// the next `up`. It serves the policy it was last started with, and the
/// secrets' values of the calling environment. Costs a file check and a
/// lock probe when all is well (the VM manager is asked only when the
/// process is gone).
pub fn revive(state: &StateDir, record: &VmRecord) -> Result<(), NetError> {
    let name = &record.name;
    let vm_dir = state.vm_dir(name);
    let process = daemon(&vm_dir);
    if !net_dir(&vm_dir).join(INPUTS_FILE).exists() || process.running() || !vm_running(state, record) {
        return Ok(());
    }
    eprintln!("hutch: the network process of {name} was gone; starting it again");
    start(state, name, &process)
}

/// Spawns `hutch net --name NAME` and waits for it to say it is ready.
fn start(state: &StateDir, name: &VmName, process: &Daemon) -> Result<(), NetError> {
    spawn(state, name, process)?.ready()
}

/// Spawns `hutch net --name NAME`.
fn spawn(state: &StateDir, name: &VmName, process: &Daemon) -> Result<Starting, NetError> {
    let vm_dir = state.vm_dir(name);
    let exe = std::env::current_exe().map_err(|e| NetError::io("finding the hutch executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(["net", "--name", name.as_str()]).env("HUTCH_STATE_DIR", state.root());
    match process.spawn_claiming(cmd) {
        Ok(spawned) => Ok(Starting { name: name.clone(), vm_dir, spawned }),
        Err(e) => {
            let _ = std::fs::remove_file(net_dir(&vm_dir).join(INPUTS_FILE));
            Err(NetError::Daemon { name: name.to_string(), source: e })
        }
    }
}

/// What `hutch doctor` shows of a VM's network.
pub struct NetStatus {
    /// The policy the last `up` started the process with; `None` when the
    /// network is off (`mode = "none"`).
    pub policy: Option<PolicyFile>,
    /// The process's pid, while it runs.
    pub pid: Option<u32>,
    /// Its log.
    pub log: std::path::PathBuf,
}

/// The network of the VM whose folder is `vm_dir`, as its files say.
pub fn status(vm_dir: &Path) -> NetStatus {
    let net = net_dir(vm_dir);
    let process = daemon(vm_dir);
    let policy = if net.join(INPUTS_FILE).exists() { PolicyFile::load(&net).ok() } else { None };
    NetStatus { policy, pid: process.pid(), log: process.log().to_path_buf() }
}

/// Whether the VM whose folder is `vm_dir` was last started with a network
/// (not `--network none`).
pub fn has_network(vm_dir: &Path) -> bool {
    net_dir(vm_dir).join(INPUTS_FILE).exists()
}

/// Stops VM `vm_dir`'s network process, if one runs.
pub fn stop(vm_dir: &Path) {
    daemon(vm_dir).terminate(STOP_GRACE);
}

/// What the process depends on, as text: the policy, and per secret a
/// SHA-256 of its placeholder and current value (so a changed value
/// restarts it, and the value itself is never written down).
fn inputs(net: &Path, policy: &PolicyFile) -> Result<String, NetError> {
    let secrets = Secrets::load(net, policy, |var| std::env::var(var).ok())?;
    let fingerprints: BTreeMap<String, String> = secrets.iter().map(|s| (s.name.clone(), s.fingerprint())).collect();
    let inputs = serde_json::json!({ "policy": policy, "secrets": fingerprints });
    Ok(inputs.to_string())
}

/// The network process itself; returns when the VM is gone.
pub async fn run(name: &VmName) -> Result<u8, NetError> {
    let state = StateDir::from_env()?;
    let dir = state.vm_dir(name);
    let net = net_dir(&dir);
    let Some(_claim) = daemon(&dir).claim().map_err(|e| NetError::io("taking the network process's lock", e))? else {
        // Another one serves this VM.
        return Ok(0);
    };
    tokio::spawn(crate::daemon::bound_own_log(daemon(&dir).log().to_path_buf(), crate::untrusted::limits::NET_LOG_BYTES));
    let served = Served::load(&net)?;
    let policy_file = served.file();
    let secrets = Secrets::load(&net, &policy_file, |var| std::env::var(var).ok())?;
    for secret in secrets.iter().filter(|s| !s.has_value()) {
        eprintln!("hutch net: warning: {} has no value: requests carrying {}'s placeholder will be refused", secret.origin(), secret.name);
    }
    let roots = HostRoots::load()?;
    let authority = if secrets.iter().next().is_some() { Some(Authority::load_or_create(&net, name.as_str())?) } else { None };
    let link = super::link::connect(&dir).await;
    let listen = listen_request(&policy_file, &secrets, &roots, authority.as_ref(), link.is_some());
    let ctx = Arc::new(Context {
        net_dir: net.clone(),
        served,
        secrets: std::sync::RwLock::new(Arc::new(secrets)),
        upstream: Upstream::from_env(),
        authority,
        client_tls: roots.client_config()?,
        audit: crate::audit::Log::for_vm(&state, &state.load(name)?),
        asks: Asks::new(Duration::from_millis(policy_file.ask_timeout_ms)),
        active: Active::default(),
    });
    let control = hutch_proto::unix_socket::bind_private(&super::control::socket(&net))
        .and_then(tokio::net::UnixListener::from_std)
        .map_err(|e| NetError::io("binding the network process's control socket", e))?;
    tokio::spawn(super::control::serve(control, ctx.clone()));
    if let Some(stream) = link {
        tokio::spawn(super::link::keep(stream, dir.clone(), ctx.clone(), policy_file.guest_port));
    }
    let mut ready = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        let record = state.load(name)?;
        match session(&record, &listen, &ctx, &mut ready).await {
            Ok(why) => eprintln!("hutch net {}: {why}", std::process::id()),
            Err(e) if !ready => return Err(e),
            Err(e) => eprintln!("hutch net {}: {e}", std::process::id()),
        }
        if !vm_running(&state, &record) {
            eprintln!("hutch net {}: the VM is not running; leaving", std::process::id());
            let _ = std::fs::remove_file(super::control::socket(&net));
            return Ok(0);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The variables that point guest programs at the proxy.
const PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];

/// What the agent is asked to set up: its listener, the variables every
/// guest process gets, the certificates the guest should trust, and (when
/// `linked`: this process serves the VM's link) the guest's end of the link.
fn listen_request(
    policy: &PolicyFile,
    secrets: &Secrets,
    roots: &HostRoots,
    authority: Option<&Authority>,
    linked: bool,
) -> EgressListenRequest {
    let proxy = format!("http://127.0.0.1:{}", policy.guest_port);
    let mut env: BTreeMap<String, String> = secrets.guest_env();
    for var in PROXY_VARS {
        env.insert(var.into(), proxy.clone());
    }
    let link = linked.then(|| {
        use super::link::addresses::{GUEST_ADDRESS, GUEST_MAC, HOST_ADDRESS, MTU, PREFIX};
        let proxy = format!("http://{HOST_ADDRESS}:{}", policy.guest_port);
        EgressLink {
            mac: GUEST_MAC.into(),
            address: format!("{GUEST_ADDRESS}/{PREFIX}"),
            mtu: MTU,
            env: PROXY_VARS.iter().map(|var| ((*var).to_owned(), proxy.clone())).collect(),
        }
    });
    for var in ["NO_PROXY", "no_proxy"] {
        env.insert(var.into(), "localhost,127.0.0.1,::1".into());
    }
    let mut ca = String::new();
    if policy.trust_host_cas {
        ca.push_str(&roots.pem());
    }
    if let Some(authority) = authority {
        ca.push_str(authority.cert_pem());
    }
    EgressListenRequest {
        port: u32::from(policy.guest_port),
        env: env.into_iter().collect(),
        ca_certificates: ca.into_bytes(),
        routes: Vec::new(),
        link,
    }
}

/// One agent connection: listen, then serve guest connections until the
/// connection or the listen call ends (`Ok` with why), or a setup step
/// fails (`Err`). When the routes change, it listens again with the new
/// ones (the agent keeps the listeners that stay, and their backlogs).
async fn session(record: &VmRecord, listen: &EgressListenRequest, ctx: &Arc<Context>, ready: &mut bool) -> Result<String, NetError> {
    let token = BearerToken::load(record.token_file.as_deref()).map_err(crate::connect::ConnectError::from)?;
    let addr = record.agent_addr()?;
    let (connection, driver) = transport::open(addr, &token, KEEPALIVE).await.map_err(crate::connect::ConnectError::from)?;
    let mut driver = tokio::spawn(driver);
    let client = Client::new(connection, token, crate::connect::peer(record));
    let agent_failed = |why: String| NetError::Agent { name: record.name.to_string(), why };
    let info = client.describe().await.map_err(|e| agent_failed(e.to_string()))?;
    if !info.capabilities.iter().any(|c| c == super::CAPABILITY) {
        return Err(agent_failed(format!("its version {} has no egress pipe", text::shown(&info.version))));
    }
    let has_routes = info.capabilities.iter().any(|c| c == super::ROUTES_CAPABILITY);
    let mut listen = listen.clone();
    if !info.capabilities.iter().any(|c| c == super::LINK_CAPABILITY) {
        listen.link = None;
    }
    let listen = &listen;
    let mut routes_rx = ctx.served.routes();
    let mut routes = routes_rx.borrow_and_update().clone();
    if !routes.is_empty() && !has_routes {
        eprintln!(
            "hutch net {}: the agent (version {}) cannot listen for tcp:// rules: they work through the proxy only (update the guest image)",
            std::process::id(),
            text::shown(&info.version)
        );
    }
    let mut listening = egress_listen(&client, listen, &routes).await.map_err(agent_failed)?;
    if !*ready {
        // stdout is the log, where `up` waits for this line.
        println!("{READY}");
        *ready = true;
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut waiting = JoinSet::new();
    let mut served = JoinSet::new();
    // Accepts started before the latest listen call may end with ABORTED
    // when it takes over: those are replaced, not a reason to stop.
    let mut generation = 0u64;
    for _ in 0..WAITING {
        waiting.spawn(wait_for_guest(client.clone(), permits.clone(), generation));
    }
    loop {
        tokio::select! {
            Some(joined) = waiting.join_next() => match joined {
                Ok((_, Ok((io, local, permit)))) => {
                    waiting.spawn(wait_for_guest(client.clone(), permits.clone(), generation));
                    let ctx = ctx.clone();
                    let route = routes.iter().find(|r| r.guest.to_string() == local).cloned();
                    served.spawn(async move {
                        match route {
                            Some(route) => super::tcp::serve(ctx, io, route).await,
                            None => proxy::serve(io, ctx).await,
                        }
                        drop(permit);
                    });
                }
                Ok((old, Err(_))) if old < generation => {
                    waiting.spawn(wait_for_guest(client.clone(), permits.clone(), generation));
                }
                Ok((_, Err(status))) => return Ok(format!("the agent stopped handing over connections: {}", text::shown(status.message()))),
                Err(e) => return Ok(format!("an accept task failed: {e}")),
            },
            Some(_) = served.join_next() => {}
            changed = routes_rx.changed() => {
                if changed.is_err() {
                    return Ok("the policy is gone".into());
                }
                routes = routes_rx.borrow_and_update().clone();
                generation += 1;
                listening = egress_listen(&client, listen, &routes).await.map_err(agent_failed)?;
            }
            message = listening.message() => {
                return Ok(match message {
                    Err(status) => format!("the guest's listener closed: {}", text::shown(status.message())),
                    Ok(_) => "the agent ended the listen call".into(),
                });
            }
            _ = &mut driver => return Ok("the agent connection ended".into()),
        }
    }
}

/// Asks the agent to listen (for the proxy, and for `routes`) and waits,
/// within the call deadline (binding listeners is short), until it says it
/// does; the call's stream, held for as long as it should listen.
async fn egress_listen(client: &Client, listen: &EgressListenRequest, routes: &[Route]) -> Result<Streaming<EgressListenResponse>, String> {
    let mut request = listen.clone();
    request.routes = routes
        .iter()
        .map(|r| EgressRoute { address: r.guest.to_string(), names: r.name().map(str::to_owned).into_iter().collect() })
        .collect();
    let listened = client
        .deadline()
        .within("EgressListen", async {
            let mut listening = client.egress_listen_checked(request).await?;
            let first = listening.message().await?;
            Ok::<_, Status>((listening, first))
        })
        .await
        .map_err(|e| e.to_string())?;
    match listened {
        Ok((listening, Some(EgressListenResponse { kind: Some(ListenKind::Listening(up)) }))) => {
            eprintln!(
                "hutch net {}: the guest's {} leads to this process ({} routes); link: {}; trust bundle: {}",
                std::process::id(),
                text::shown(&up.address),
                routes.len(),
                if up.link.is_empty() { "none".to_owned() } else { text::shown(&up.link) },
                if up.ca_bundle.is_empty() { "none".to_owned() } else { text::shown(&up.ca_bundle) }
            );
            for problem in up.problems.iter().take(PROBLEMS_SHOWN) {
                eprintln!("hutch net {}: guest configuration: {}", std::process::id(), text::shown(problem));
            }
            Ok(listening)
        }
        Ok(_) => Err("it ended the listen call without listening".into()),
        Err(status) => Err(text::shown(status.message())),
    }
}

/// Waits (holding a permit) for the agent to hand over the next guest
/// connection; the connection, and the listener it came in on.
async fn wait_for_guest(
    mut client: Client,
    permits: Arc<Semaphore>,
    generation: u64,
) -> (u64, Result<(GuestIo, String, OwnedSemaphorePermit), Status>) {
    let accepted = async {
        let permit = permits.acquire_owned().await.map_err(|_| Status::cancelled("shutting down"))?;
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        tx.try_send(ForwardRequest { kind: Some(RequestKind::Accept(EgressAccept {})) }).map_err(|_| Status::internal("queue full"))?;
        let mut inbound = client.egress_accept(ReceiverStream::new(rx)).await?.into_inner();
        match inbound.message().await? {
            Some(ForwardResponse { kind: Some(Kind::Accepted(accepted)) }) => Ok((GuestIo::new(inbound, tx), accepted.local, permit)),
            Some(ForwardResponse { kind: Some(Kind::Failed(failed)) }) => Err(Status::failed_precondition(text::shown(&failed.message))),
            _ => Err(Status::aborted("the agent ended an accept without a connection")),
        }
    };
    (generation, accepted.await)
}

/// Whether the VM still runs, as its backend sees it.
fn vm_running(state: &StateDir, record: &VmRecord) -> bool {
    let Ok(backend) = crate::backend::for_kind(record.kind(), state) else { return false };
    matches!(backend.state(record, &state.vm_dir(&record.name)), Ok(crate::backend::VmState::Running))
}
