//! Why a call that reached the agent failed (reaching it is
//! [`super::TransportError`]'s business): the gRPC status, kept whole (its
//! message, the agent's text, is shown escaped and cut), a broken protocol,
//! or an agent that did not answer in time.

use tonic::{Code, Status};

use crate::untrusted::deadline::Expired;
use crate::untrusted::{ProtocolError, text};

/// The start of the status message of an answer hutch refused while
/// decoding it: [`CallError::from_status`] makes it a protocol error.
pub const REFUSED: &str = "hutch refused the agent's answer: ";

/// A failed call to the agent.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent rejected the credentials.
    #[error("the agent refused the call: {}", text::shown(.0.message()))]
    Unauthenticated(Status),
    /// The agent answered with an error.
    #[error("the agent failed the call: {}: {}", .0.code(), text::shown(.0.message()))]
    Failed(Status),
    /// The connection broke while a command was running.
    #[error("lost the connection to the agent while the command was running ({}); its outcome is unknown", text::shown(.0.message()))]
    ConnectionLost(Status),
    /// The agent broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The agent did not answer in time.
    #[error(transparent)]
    Deadline(#[from] Expired),
}

impl CallError {
    /// Classifies a gRPC status from a call that had not started streaming.
    pub fn from_status(status: Status) -> Self {
        match status.code() {
            _ if Self::is_refusal(&status) => CallError::Protocol(ProtocolError::Refused(text::shown(status.message()))),
            Code::Unauthenticated | Code::PermissionDenied => CallError::Unauthenticated(status),
            Code::Unavailable => CallError::ConnectionLost(status),
            _ => CallError::Failed(status),
        }
    }

    /// Classifies a gRPC status that broke a running stream.
    pub fn lost(status: Status) -> Self {
        match status.code() {
            _ if Self::is_refusal(&status) => CallError::from_status(status),
            Code::Unavailable | Code::Cancelled | Code::Unknown => CallError::ConnectionLost(status),
            _ => CallError::from_status(status),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            CallError::Unauthenticated(_) => "pass the agent's token with --token-file (or HUTCH_TOKEN_FILE)".into(),
            CallError::ConnectionLost(_) => "check that the agent (or its VM) is still running: `hutch ping`".into(),
            CallError::Failed(_) | CallError::Protocol(_) => {
                "the agent and hutch may be different versions: compare `hutch --version` with `hutch ping`; an agent that breaks the protocol may also be compromised".into()
            }
            CallError::Deadline(e) => e.hint(),
        }
    }
}

impl CallError {
    /// Whether hutch itself refused the answer while decoding it (a message
    /// over a cap or undecodable): the agent broke the protocol.
    pub fn is_refusal(status: &Status) -> bool {
        status.code() == Code::Internal && status.message().starts_with(REFUSED)
    }
}
