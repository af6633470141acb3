//! Why a call that reached the agent failed (reaching it is
//! [`super::TransportError`]'s business): the gRPC status, kept whole.

use tonic::{Code, Status};

/// A failed call to the agent.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent rejected the credentials.
    #[error("the agent refused the call: {}", .0.message())]
    Unauthenticated(Status),
    /// The agent answered with an error.
    #[error("the agent failed the call: {}: {}", .0.code(), .0.message())]
    Failed(Status),
    /// The connection broke while a command was running.
    #[error("lost the connection to the agent while the command was running ({}); its outcome is unknown", .0.message())]
    ConnectionLost(Status),
    /// The agent broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl CallError {
    /// Classifies a gRPC status from a call that had not started streaming.
    pub fn from_status(status: Status) -> Self {
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => CallError::Unauthenticated(status),
            Code::Unavailable => CallError::ConnectionLost(status),
            _ => CallError::Failed(status),
        }
    }

    /// Classifies a gRPC status that broke a running stream.
    pub fn lost(status: Status) -> Self {
        match status.code() {
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
                "the agent and hutch may be different versions: compare `hutch --version` with `hutch ping`".into()
            }
        }
    }
}
