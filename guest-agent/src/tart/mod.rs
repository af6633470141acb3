//! Tart's guest-agent service (`Agent`, no package), so an image with
//! hutch-agent in place of Cirrus Labs' tart-guest-agent keeps `tart exec` and
//! `tart ip --resolver=agent` working.
//!
//! It is a translation layer, not a second exec engine: [`exec`] turns Tart's
//! requests into hutch.v1 ones for `crate::exec::stream` and its responses
//! back into Tart's; [`ip`] answers `ResolveIP` from the guest's interfaces.

mod exec;
mod ip;

use std::pin::Pin;

use hutch_proto::tart::agent_server::Agent;
use hutch_proto::tart::signal_request::Signal;
use hutch_proto::tart::{ExecRequest, ExecResponse, ResolveIpRequest, ResolveIpResponse, SignalRequest};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::exec::registry::Groups;
use crate::exec::session_store::{SessionError, Sessions};

/// The Tart-compatible service; shares the agent's process-group registry, so
/// agent shutdown kills Tart execs too, and its sessions: a `detach`ed
/// command is a session (`hutch ps`, `attach` and `logs` see it too).
#[derive(Clone)]
pub struct TartService {
    groups: Groups,
    sessions: Sessions,
}

impl TartService {
    /// A service whose execs register their process groups in `groups` and
    /// whose detached commands are sessions in `sessions`.
    pub fn new(groups: Groups, sessions: Sessions) -> Self {
        Self { groups, sessions }
    }
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for TartService {
    type ExecStream = ExecStream;

    async fn exec(&self, request: Request<Streaming<ExecRequest>>) -> Result<Response<Self::ExecStream>, Status> {
        let responses = exec::start(request.into_inner(), self.groups.clone(), self.sessions.clone()).await?;
        Ok(Response::new(Box::pin(responses)))
    }

    async fn resolve_ip(&self, _request: Request<ResolveIpRequest>) -> Result<Response<ResolveIpResponse>, Status> {
        match ip::primary_ipv4() {
            Some(ip) => Ok(Response::new(ResolveIpResponse { ip: ip.to_string() })),
            None => Err(Status::unavailable("the guest has no non-loopback IPv4 address yet")),
        }
    }

    async fn signal(&self, request: Request<SignalRequest>) -> Result<Response<()>, Status> {
        // Detached commands are sessions, their exec id the session's name; an
        // attached command is signalled through its own stream.
        let request = request.into_inner();
        let signal = match Signal::try_from(request.signal) {
            Ok(Signal::Sigterm) => nix::sys::signal::Signal::SIGTERM,
            Ok(Signal::Sigkill) => nix::sys::signal::Signal::SIGKILL,
            _ => return Err(Status::invalid_argument(format!("unsupported signal {}", request.signal))),
        };
        match self.sessions.signal_with(&request.exec_id, signal) {
            // As tart-guest-agent: a command that has already exited is no error.
            Ok(_) | Err(SessionError::Ended(_)) => Ok(Response::new(())),
            Err(SessionError::NotFound(_)) => {
                let id = crate::untrusted::shown_str(&request.exec_id);
                Err(Status::not_found(format!("no detached command with id \"{id}\"")))
            }
            Err(e) => Err(e.into()),
        }
    }
}
