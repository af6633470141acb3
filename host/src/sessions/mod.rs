//! Sessions in a VM, from the host: the calls behind `hutch ps`, `wait` and
//! `kill`, and what their failures mean. (`exec --detach`/`--keep`, `attach`
//! and `logs` stream, so they live with the exec engine: `crate::exec::attach`.)

pub mod table;

use hutch_proto::v1::{ListSessionsRequest, ListSessionsResponse, SessionInfo, SignalSessionRequest, WaitSessionRequest};
use tonic::{Code, Status};

use crate::transport::{CallError, Client};

/// Why a session could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No session has that name.
    #[error("no session named {0:?} in this VM")]
    NotFound(String),
    /// It has already ended.
    #[error("session {0:?} has already ended")]
    Ended(String),
    /// The agent refused the request (a bad name, a bad signal, a lost session's output).
    #[error("{0}")]
    Refused(String),
    /// The agent predates sessions.
    #[error("the agent in this VM does not keep sessions (it is older than this hutch)")]
    Unsupported,
    /// It ended with a previous agent; how is unknown.
    #[error("session {name:?} ended when {reason}; its exit status is unknown")]
    Lost {
        /// The session.
        name: String,
        /// What ended it.
        reason: String,
    },
    /// `run --rm` with a session that should outlive hutch.
    #[error("`hutch run --rm` deletes the VM when hutch stops, so {0} has nothing to outlive it in")]
    RmWithSession(&'static str),
    /// `--tag`/`--buffer` without a session.
    #[error("{0} names a session's setting: add --detach or --keep")]
    NotASession(&'static str),
    /// The call failed otherwise (connection lost, protocol).
    #[error(transparent)]
    Call(#[from] CallError),
}

impl SessionError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SessionError::NotFound(_) => "`hutch ps` lists the VM's sessions".into(),
            SessionError::Ended(name) => format!("`hutch wait {name}` gives its exit code, `hutch logs {name}` its output"),
            SessionError::Refused(_) => return None,
            SessionError::Unsupported => "update the agent: `hutch agent install`, or a fresh image (`cargo xtask image`)".into(),
            SessionError::Lost { .. } => "sessions end with the agent that runs them; `hutch ps` shows what the agent has now".into(),
            SessionError::RmWithSession(_) => {
                "drop --rm to keep the VM (`hutch run --detach` leaves it up with the session), or drop the session flag".into()
            }
            SessionError::NotASession(_) => "`hutch exec --detach --tag NAME -- CMD` starts a named session".into(),
            SessionError::Call(e) => e.hint(),
        })
    }
}

/// `text` with control characters (escape sequences a hostile guest could
/// send to the host's terminal) shown escaped.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Classifies a status from a call on session `name`.
pub fn from_status(status: Status, name: &str) -> SessionError {
    match status.code() {
        Code::NotFound => SessionError::NotFound(name.to_owned()),
        Code::FailedPrecondition => SessionError::Ended(name.to_owned()),
        Code::InvalidArgument => SessionError::Refused(printable(status.message())),
        Code::Unimplemented => SessionError::Unsupported,
        _ => CallError::lost(status).into(),
    }
}

/// The agent's sessions.
pub async fn list(client: &mut Client) -> Result<ListSessionsResponse, SessionError> {
    Ok(client.list_sessions(ListSessionsRequest {}).await.map_err(|s| from_status(s, ""))?.into_inner())
}

/// Waits until session `name` has ended; how it did.
pub async fn wait(client: &mut Client, name: &str) -> Result<SessionInfo, SessionError> {
    let response = client.wait_session(WaitSessionRequest { name: name.to_owned() }).await.map_err(|s| from_status(s, name))?;
    response.into_inner().session.ok_or_else(|| CallError::Protocol("the agent answered a wait without the session".into()).into())
}

/// Sends `signal` (a name: "TERM", "KILL", ...) to session `name`.
pub async fn signal(client: &mut Client, name: &str, signal: &str) -> Result<(), SessionError> {
    let request = SignalSessionRequest { name: name.to_owned(), signal: signal.to_owned() };
    client.signal_session(request).await.map_err(|s| from_status(s, name))?;
    Ok(())
}
