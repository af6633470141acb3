//! The egress listener's life: bound by an `EgressListen` call and closed
//! when that call ends, so guest programs get "connection refused" (not a
//! hang) whenever no host process is there to take their connections.
//!
//! `EgressAccept` streams wait on the listener concurrently; each takes one
//! connection and relays it exactly as a `Forward` stream does. A new
//! `EgressListen` (the host's network process restarted before the old call
//! was noticed gone) takes over: on the same port it keeps the socket, so no
//! connection in the backlog is lost; the old call and the accepts waiting
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

use super::guest_config;
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

/// The listener of the current EgressListen call.
struct Active {
    id: u64,
    port: u16,
    listener: Arc<TcpListener>,
    /// Set to true when this call's listener is handed over or closed.
    stop: watch::Sender<bool>,
}

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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let reused = {
            let mut active = self.lock();
            let old = active.take();
            if let Some(old) = &old {
                let _ = old.stop.send(true);
            }
            old.filter(|old| old.port == port).map(|old| old.listener)
        };
        let listener = match reused {
            Some(listener) => listener,
            None => match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
                Ok(listener) => Arc::new(listener),
                Err(e) => {
                    let _ = responses
                        .send(Err(Status::failed_precondition(format!("cannot listen on 127.0.0.1:{port} in the guest: {e}"))))
                        .await;
                    return;
                }
            },
        };
        *self.lock() = Some(Active { id, port, listener: listener.clone(), stop: stop_tx });

        let env: BTreeMap<String, String> = request.env.into_iter().collect();
        let config = self.config.clone();
        let ca = request.ca_certificates;
        let applied = tokio::task::spawn_blocking(move || guest_config::apply(&config.etc, config.home.as_deref(), &env, &ca)).await;
        let applied = match applied {
            Ok(applied) => applied,
            Err(e) => {
                self.close(id);
                let _ = responses.send(Err(Status::internal(format!("writing the guest configuration failed: {e}")))).await;
                return;
            }
        };
        super::env::set(applied.env);
        let listening = EgressListening {
            address: listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            ca_bundle: applied.ca_bundle.map(|b| b.display().to_string()).unwrap_or_default(),
            configured: applied.configured,
            problems: applied.problems,
        };
        tracing::info!("egress listener on {} for the host", listening.address);
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
            tracing::info!("egress listener on port {} closed: the host's call ended", old.port);
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
        let current = self.lock().as_ref().map(|a| (a.listener.clone(), a.stop.subscribe()));
        let Some((listener, mut stop)) = current else {
            return failed(&responses, ForwardError::ForwardNotListening, "no egress listener: no EgressListen call is active").await;
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
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
        drop(listener);
        let _ = stream.set_nodelay(true);
        let peer = peer.to_string();
        if responses.send(Ok(response(Kind::Accepted(EgressAccepted { peer: peer.clone() })))).await.is_err() {
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
