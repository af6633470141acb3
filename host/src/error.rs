//! Errors of the hutch CLI itself (as opposed to the command it runs). Every
//! one of them exits with [`exit::HUTCH_FAILED`] and prints one line saying
//! what went wrong, then a hint saying what to do.

use hutch_proto::addr::AddrError;
use tonic::{Code, Status};

use crate::agent_install::InstallError;
use crate::backend::BackendError;
use crate::exit;
use crate::sessions::SessionError;
use crate::state::StateError;
use crate::sync::SyncError;
use crate::transport::TransportError;

/// A failure of hutch, not of the remote command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address does not parse.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// The agent cannot be reached.
    #[error("cannot reach the agent: {0}")]
    Transport(#[from] TransportError),
    /// The agent rejected the credentials.
    #[error("the agent refused the call: {0}")]
    Unauthenticated(String),
    /// The agent answered with an error.
    #[error("the agent failed the call: {0}")]
    Rpc(String),
    /// The connection broke while a command was running.
    #[error("lost the connection to the agent while the command was running ({0}); its outcome is unknown")]
    ConnectionLost(String),
    /// The agent broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The state directory or a VM record is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The VM manager failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Installing the agent over SSH failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// A `--ro` snapshot could not be synced or diffed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The request contradicts what exists.
    #[error("{0}")]
    Usage(String),
    /// A VM did not come up.
    #[error("VM {name} did not boot: {why}")]
    Boot {
        /// The VM.
        name: String,
        /// What went wrong.
        why: String,
        /// The end of its console, when the backend has one.
        console: Option<String>,
    },
    /// The VM is not in a state where its agent can answer.
    #[error("VM {name} is {state}, so its agent cannot answer")]
    VmDown {
        /// The VM.
        name: String,
        /// Its state ("stopped", "missing").
        state: String,
    },
    /// The VM runs but its agent does not answer.
    #[error("VM {name} is running but its agent does not answer ({cause})")]
    AgentSilent {
        /// The VM.
        name: String,
        /// The transport error.
        cause: String,
        /// Where to look.
        console: Option<String>,
    },
    /// The agent could not set up the workspace.
    #[error("the agent could not set up the workspace: {0}")]
    Prepare(String),
    /// A configuration file is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A hook script failed; hutch exits with its code.
    #[error("hook {} failed: {why}", script.display())]
    Hook {
        /// The script.
        script: std::path::PathBuf,
        /// How it failed.
        why: String,
        /// Its exit code, which hutch passes on.
        code: u8,
    },
    /// hutch was asked to stop by a signal before the command ran.
    #[error("interrupted by {0}")]
    Interrupted(nix::sys::signal::Signal),
    /// Port forwarding could not start.
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
    /// A session could not be found or used.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A local operation failed.
    #[error("{what}: {source}")]
    Local {
        /// What hutch was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// Classifies a gRPC status from a call that had not started streaming.
    pub fn from_status(status: Status) -> Self {
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => Error::Unauthenticated(status.message().to_owned()),
            Code::Unavailable => Error::ConnectionLost(status.message().to_owned()),
            _ => Error::Rpc(format!("{}: {}", status.code(), status.message())),
        }
    }

    /// Classifies a gRPC status that broke a running exec stream.
    pub fn lost(status: Status) -> Self {
        match status.code() {
            Code::Unavailable | Code::Cancelled | Code::Unknown => Error::ConnectionLost(status.message().to_owned()),
            _ => Error::from_status(status),
        }
    }

    /// Wraps a local I/O failure.
    pub fn local(what: &str, source: std::io::Error) -> Self {
        Error::Local { what: what.to_owned(), source }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Addr(_) => None,
            Error::Transport(e) => Some(e.hint()),
            Error::Unauthenticated(_) => Some("pass the agent's token with --token-file (or HUTCH_TOKEN_FILE)".into()),
            Error::ConnectionLost(_) => Some("check that the agent (or its VM) is still running: `hutch ping`".into()),
            Error::Rpc(_) | Error::Protocol(_) => {
                Some("the agent and hutch may be different versions: compare `hutch --version` with `hutch ping`".into())
            }
            Error::State(StateError::NoSuchVm(name)) => Some(format!(
                "create it with `hutch up --name {name}`, pick another with --name (`hutch ls` lists them), or reach an agent directly with --addr"
            )),
            Error::State(_) => None,
            Error::Backend(e) => e.hint(),
            Error::Install(e) => e.hint(),
            Error::Usage(_) => None,
            Error::Prepare(_) => {
                Some("check that the workspace folder exists and is shared with the VM; `hutch reset NAME` starts over".into())
            }
            Error::Sync(e) => e.hint(),
            Error::Boot { console, .. } => Some(match console {
                Some(console) => format!("the VM's last output:\n{console}"),
                None => "rerun with -v for details".into(),
            }),
            Error::VmDown { name, .. } => Some(format!("start it with `hutch up --name {name}`")),
            Error::AgentSilent { name, console, .. } => Some(match console {
                Some(console) => format!("restart it with `hutch reset {name}`; its last output:\n{console}"),
                None => format!("restart it with `hutch reset {name}`"),
            }),
            Error::Config(_) => Some("fix the file (`hutch config` shows what is in force and where it comes from)".into()),
            Error::Hook { .. } => Some("fix the hook, or run without it (its output is above)".into()),
            Error::Interrupted(_) | Error::Local { .. } => None,
            Error::Forward(e) => e.hint(),
            Error::Session(e) => e.hint(),
        }
    }

    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            // As if the signal had killed hutch, which is what the user asked.
            Error::Interrupted(signal) => exit::signaled(*signal as u32),
            // The hook's own code, as `run` passes on its command's.
            Error::Hook { code, .. } => *code,
            _ => exit::HUTCH_FAILED,
        }
    }
}
