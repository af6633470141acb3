//! The egress listener's life: bound by an `EgressListen` call and closed
//! when that call ends, so guest programs get "connection refused" (not a
//! hang) whenever no host process is there to take their connections.
//!
//! Besides the proxy's listener, the call may ask for routes: more loopback
//! listeners (the host's `tcp://` rules), each on its own address of
//! 127.0.0.0/8 with the host names that resolve to it in `/etc/hosts`.
//!
//! The call may also ask for a link ([`super::link`]): an interface that
//! leads straight to the host's proxy. When it comes up, the proxy
//! variables guest programs get point through it.
//!
//! `EgressAccept` streams wait on every listener at once; each takes one
//! connection, says which listener it came in on, and relays it exactly as a
//! `Forward` stream does. A new `EgressListen` (the host's network process
//! restarted before the old call was noticed gone, or its routes changed)
//! takes over: a listener on an address it asks for again is kept, so no
//! connection in its backlog is lost; the old call and the accepts waiting
//! for it end with ABORTED.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hutch_proto::v1::egress_listen_response::Kind as ListenKind;
use hutch_proto::v1::forward_request::Kind as RequestKind;
use hutch_proto::v1::forward_response::Kind;
use hutch_proto::v1::{
    EgressAccepted, EgressListenRequest, EgressListenResponse, EgressListening, ForwardError, ForwardFailed, ForwardRequest,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use super::{guest_config, link, route};
use crate::forward::{self, Responses, response};

/// The sending side of an EgressListen response stream.
pub type ListenResponses = mpsc::Sender<Result<EgressListenResponse, Status>>;

/// The response stream type of EgressListen.
pub type ListenStream = Pin<Box<dyn Stream<Item = Result<EgressListenResponse, Status>> + Send>>;

/// Where the agent writes guest-wide configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The guest's `/etc` (a private folder for an agent beside the host, in tests).
    pub etc: PathBuf,
    /// The home folder to fall back on for the trust bundle.
    pub home: Option<PathBuf>,
}

/// The egress listener shared by every call to one agent.
#[derive(Clone)]
pub struct Egress {
    config: Arc<Config>,
    active: Arc<Mutex<Option<Active>>>,
    next_id: Arc<AtomicU64>,
}

/// The listeners of the current EgressListen call: the proxy's first.
struct Active {
    id: u64,
    listeners: Vec<(SocketAddr, Arc<TcpListener>)>,
    /// Set to true when this call's listeners are handed over or closed.
    stop: watch::Sender<bool>,
}

/// Most routes one call may ask for: each is a listening socket.
const MAX_ROUTES: usize = 256;

impl Egress {
    /// No listener yet.
    pub fn new(config: Config) -> Egress {
        Egress { config: Arc::new(config), active: Arc::new(Mutex::new(None)), next_id: Arc::new(AtomicU64::new(1)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves one EgressListen call to its end: binds (or takes over) the
    /// listener, writes the guest configuration, answers `listening`, and
    /// closes the listener when the caller goes away.
    pub async fn listen(self, request: EgressListenRequest, responses: ListenResponses) {
        let Some(port) = u16::try_from(request.port).ok().filter(|p| *p != 0) else {
            let _ = responses.send(Err(Status::invalid_argument(format!("port {} is not in 1..=65535", request.port)))).await;
            return;
        };
        if request.routes.len() > MAX_ROUTES {
            let _ = responses.send(Err(Status::invalid_argument(format!("more than {MAX_ROUTES} routes")))).await;
            return;
        }
        let mut problems = Vec::new();
        let mut routes = Vec::new();
        for route in &request.routes {
            match route::check(route) {
                Ok(checked) => routes.push(checked),
                Err(why) => problems.push(why),
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let proxy = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut kept: Vec<(SocketAddr, Arc<TcpListener>)> = {
            let mut active = self.lock();
            let old = active.take();
            if let Some(old) = &old {
                let _ = old.stop.send(true);
            }
            old.map(|old| old.listeners).unwrap_or_default()
        };
        let mut take = |addr: SocketAddr| kept.iter().position(|(a, _)| *a == addr).map(|i| kept.swap_remove(i).1);
        let listener = match take(proxy) {
            Some(listener) => listener,
            None => match TcpListener::bind(proxy).await {
                Ok(listener) => Arc::new(listener),
                Err(e) => {
                    let _ = responses.send(Err(Status::failed_precondition(format!("cannot listen on {proxy} in the guest: {e}")))).await;
                    return;
                }
            },
        };
        let mut listeners = vec![(proxy, listener.clone())];
        for route in &routes {
            if listeners.iter().any(|(a, _)| *a == route.address) {
                continue;
            }
            match take(route.address) {
                Some(listener) => listeners.push((route.address, listener)),
                None => match TcpListener::bind(route.address).await {
                    Ok(listener) => listeners.push((route.address, Arc::new(listener))),
                    Err(e) => problems.push(format!("route {}: cannot listen there: {e}", route.address)),
                },
            }
        }
        drop(kept);
        *self.lock() = Some(Active { id, listeners, stop: stop_tx });

        let mut env: BTreeMap<String, String> = request.env.into_iter().collect();
        let config = self.config.clone();
        let ca = request.ca_certificates;
        let hosts = route::hosts_lines(&routes);
        let link = request.link;
        let applied = tokio::task::spawn_blocking(move || {
            // The link first: when it comes up, its variables are the ones
            // the guest configuration below writes.
            let (link, link_problem) = match link {
                None => (None, None),
                Some(link) => match link::Settings::parse(&link.mac, &link.address, link.mtu).and_then(|s| link::bring_up(&s)) {
                    Ok(interface) => {
                        env.extend(link.env);
                        (Some(format!("{interface} {}", link.address)), None)
                    }
                    Err(e) => (None, Some(format!("the link to the host's proxy: {e}"))),
                },
            };
            let mut applied = guest_config::apply(&config.etc, config.home.as_deref(), &env, &ca);
            applied.problems.extend(link_problem);
            match guest_config::hosts(&config.etc, &hosts) {
                Ok(Some(path)) => applied.configured.push(path.display().to_string()),
                Ok(None) => {}
                Err(e) => applied.problems.push(format!("{}: {e}", config.etc.join("hosts").display())),
            }
            (applied, link)
        })
        .await;
        let (mut applied, link) = match applied {
            Ok(applied) => applied,
            Err(e) => {
                self.close(id);
                let _ = responses.send(Err(Status::internal(format!("writing the guest configuration failed: {e}")))).await;
                return;
            }
        };
        applied.problems.extend(problems);
        super::env::set(applied.env);
        let listening = EgressListening {
            address: listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            ca_bundle: applied.ca_bundle.map(|b| b.display().to_string()).unwrap_or_default(),
            configured: applied.configured,
            problems: applied.problems,
            link: link.unwrap_or_default(),
        };
        tracing::info!("egress listener on {} for the host ({} routes, link: {:?})", listening.address, routes.len(), listening.link);
        let answer = EgressListenResponse { kind: Some(ListenKind::Listening(listening)) };
        if responses.send(Ok(answer)).await.is_ok() {
            tokio::select! {
                () = responses.closed() => {}
                () = stopped(&mut stop_rx) => {
                    let _ = responses.send(Err(Status::aborted("a newer EgressListen took over the listener"))).await;
                }
            }
        }
        self.close(id);
    }

    /// Closes call `id`'s listener, unless a newer call took it over.
    fn close(&self, id: u64) {
        let mut active = self.lock();
        if active.as_ref().is_some_and(|a| a.id == id)
            && let Some(old) = active.take()
        {
            let _ = old.stop.send(true);
            let closed: Vec<String> = old.listeners.iter().map(|(a, _)| a.to_string()).collect();
            tracing::info!("egress listeners on {} closed: the host's call ended", closed.join(", "));
        }
    }

    /// Serves one EgressAccept stream: waits for a guest connection, then
    /// relays it until both sides are done.
    pub async fn accept(self, mut inbound: Streaming<ForwardRequest>, responses: Responses) {
        match inbound.message().await {
            Ok(Some(ForwardRequest { kind: Some(RequestKind::Accept(_)) })) => {}
            Ok(Some(_)) => return failed(&responses, ForwardError::ForwardInvalidRequest, "the first message must be `accept`").await,
            Ok(None) | Err(_) => return,
        }
        let current = self.lock().as_ref().map(|a| (a.listeners.clone(), a.stop.subscribe()));
        let Some((listeners, mut stop)) = current else {
            return failed(&responses, ForwardError::ForwardNotListening, "no egress listener: no EgressListen call is active").await;
        };
        let accepts = listeners.iter().map(|(addr, listener)| Box::pin(async move { (*addr, listener.accept().await) }));
        let (stream, peer, local) = tokio::select! {
            ((local, accepted), _, _) = futures_util::future::select_all(accepts) => match accepted {
                Ok((stream, peer)) => (stream, peer, local),
                Err(e) => {
                    let _ = responses.send(Err(Status::unavailable(format!("accepting a guest connection failed: {e}")))).await;
                    return;
                }
            },
            () = stopped(&mut stop) => {
                let _ = responses.send(Err(Status::aborted("the egress listener was closed"))).await;
                return;
            }
            () = responses.closed() => return,
        };
        drop(listeners);
        let _ = stream.set_nodelay(true);
        let peer = peer.to_string();
        let accepted = EgressAccepted { peer: peer.clone(), local: local.to_string() };
        if responses.send(Ok(response(Kind::Accepted(accepted)))).await.is_err() {
            return;
        }
        forward::relay(stream, inbound, &responses, &peer).await;
    }
}

/// Resolves once `stop` says stopped (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

async fn failed(responses: &Responses, error: ForwardError, message: &str) {
    let failed = ForwardFailed { error: error as i32, message: message.to_owned() };
    let _ = responses.send(Ok(response(Kind::Failed(failed)))).await;
}
