//! Sessions in a VM, from the host: the calls behind `hutch ps`, `wait` and
//! `kill`, and what their failures mean. (`exec --detach`/`--keep`, `attach`
//! and `logs` stream, so they live with the exec engine: `crate::exec::attach`.)

pub mod table;

use hutch_proto::v1::{ListSessionsResponse, SessionInfo, SessionState, SignalSessionRequest, WaitSessionRequest};
use tonic::{Code, Status};

use crate::transport::{CallError, Client};
use crate::untrusted::protocol::known;
use crate::untrusted::{ProtocolError, limits, text};

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

/// Guest text (a session's name, a reason, a message) as the terminal may
/// show it: escaped and cut (see `crate::untrusted::text`).
pub fn printable(text: &str) -> String {
    text::shown(text)
}

impl From<ProtocolError> for SessionError {
    fn from(e: ProtocolError) -> Self {
        SessionError::Call(e.into())
    }
}

/// Classifies a status from a call on session `name`.
pub fn from_status(status: Status, name: &str) -> SessionError {
    match status.code() {
        _ if CallError::is_refusal(&status) => CallError::from_status(status).into(),
        Code::NotFound => SessionError::NotFound(name.to_owned()),
        Code::FailedPrecondition => SessionError::Ended(name.to_owned()),
        Code::InvalidArgument => SessionError::Refused(printable(status.message())),
        Code::Unimplemented => SessionError::Unsupported,
        _ => CallError::lost(status).into(),
    }
}

/// The agent's sessions, each checked (see [`check`]); within the call
/// deadline.
pub async fn list(client: &mut Client) -> Result<ListSessionsResponse, SessionError> {
    let deadline = client.deadline();
    let list =
        deadline.within("ListSessions", client.list_sessions_checked()).await.map_err(CallError::from)?.map_err(|s| from_status(s, ""))?;
    limits::SESSIONS_LISTED.check_len(list.sessions.len()).map_err(ProtocolError::from)?;
    for session in &list.sessions {
        check(session)?;
    }
    Ok(list)
}

/// Waits until session `name` has ended; how it did. Never cut: waiting
/// for the end is what was asked.
pub async fn wait(client: &mut Client, name: &str) -> Result<SessionInfo, SessionError> {
    let response = client.wait_session_checked(WaitSessionRequest { name: name.to_owned() }).await.map_err(|s| from_status(s, name))?;
    let session = response.session.ok_or(ProtocolError::Unexpected("answered a wait without the session"))?;
    check(&session)?;
    Ok(session)
}

/// Sends `signal` (a name: "TERM", "KILL", ...) to session `name`, within
/// the call deadline.
pub async fn signal(client: &mut Client, name: &str, signal: &str) -> Result<(), SessionError> {
    let request = SignalSessionRequest { name: name.to_owned(), signal: signal.to_owned() };
    let deadline = client.deadline();
    deadline
        .within("SignalSession", client.signal_session_checked(request))
        .await
        .map_err(CallError::from)?
        .map_err(|s| from_status(s, name))?;
    Ok(())
}

/// A session's name as the agent sent it, checked: a tag as the protocol
/// makes them (scripts use the one `exec --detach` prints unquoted).
pub fn check_tag(name: &str) -> Result<(), ProtocolError> {
    let name = name.as_bytes();
    let tag_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > 64 || !name.iter().all(tag_char) || matches!(name[0], b'-' | b'.') {
        return Err(ProtocolError::Unexpected("sent a session whose name is not a tag"));
    }
    Ok(())
}

/// A session as the agent described it, checked against the protocol: a
/// name that is a tag (1-64 of `A-Z a-z 0-9 . _ -`, not starting with `-`
/// or `.`), a known state, and for a finished one an end that is one.
pub fn check(session: &SessionInfo) -> Result<(), ProtocolError> {
    check_tag(&session.name)?;
    match known::<SessionState>("a session state", session.state)? {
        SessionState::Unspecified => Err(ProtocolError::UnknownValue { what: "a session state", value: 0 }),
        SessionState::SessionExited => match &session.exited {
            Some(exited) => crate::exit::of_exited(exited).map(drop),
            None => Err(ProtocolError::Unexpected("sent a finished session without how it ended")),
        },
        SessionState::SessionRunning | SessionState::SessionLost => Ok(()),
    }
}
