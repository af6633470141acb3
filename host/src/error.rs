//! Errors of the hutch CLI itself (as opposed to the command it runs), and
//! their exit codes, in one place. Each module has its own error enum
//! keeping its typed causes (`ConnectError`, `LifecycleError`, …); this one
//! gathers them for `main`, which prints one line saying what went wrong,
//! then a hint saying what to do, and exits with [`Error::exit_code`]:
//! [`exit::HUTCH_FAILED`] unless a hook's or a signal's code is passed on.

use hutch_proto::addr::AddrError;

use crate::agent_install::InstallError;
use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::connect::ConnectError;
use crate::exec::ExecError;
use crate::exit;
use crate::fork::ForkError;
use crate::forward::ForwardError;
use crate::git::GitError;
use crate::hooks::HookError;
use crate::lifecycle::LifecycleError;
use crate::mcp::McpError;
use crate::mux::MuxError;
use crate::net::NetError;
use crate::plan::PlanError;
use crate::sessions::SessionError;
use crate::state::StateError;
use crate::sync::SyncError;
use crate::sync::live::LiveError;
use crate::target::TargetError;
use crate::transport::CallError;
use crate::warm::WarmError;
use crate::workspace::WorkspaceError;

/// A failure of hutch, not of the remote command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address does not parse.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// No agent or VM could be chosen.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The agent cannot be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The agent refused or failed a call.
    #[error(transparent)]
    Call(#[from] CallError),
    /// An exec failed before its process ended.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A VM could not be brought up or down.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The workspace could not be found or set up.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// A hook failed; hutch exits with its code.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The multiplexer could not serve.
    #[error(transparent)]
    Mux(#[from] MuxError),
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
    /// A synced workspace stopped.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// A configuration file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Port forwarding could not start.
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// The VM's network could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The git guard could not be set up, or the guest's commits not taken.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A VM could not be forked.
    #[error(transparent)]
    Fork(#[from] ForkError),
    /// A warm pool could not be read, changed or filled.
    #[error(transparent)]
    Warm(#[from] WarmError),
    /// What `up`/`run` ask for could not be worked out (boxed: it holds
    /// the configuration's and the backend's errors by value).
    #[error(transparent)]
    Plan(Box<PlanError>),
    /// The request contradicts what exists.
    #[error("{0}")]
    Usage(String),
    /// hutch was asked to stop by a signal before the command ran.
    #[error("interrupted by {0}")]
    Interrupted(nix::sys::signal::Signal),
    /// A session could not be found or used.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// `hutch mcp` could not serve.
    #[error(transparent)]
    Mcp(#[from] McpError),
    /// A local operation failed.
    #[error("{what}: {source}")]
    Local {
        /// What hutch was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<PlanError> for Error {
    fn from(error: PlanError) -> Self {
        Error::Plan(Box::new(error))
    }
}

impl Error {
    /// Wraps a local I/O failure.
    pub fn local(what: &str, source: std::io::Error) -> Self {
        Error::Local { what: what.to_owned(), source }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Addr(_) | Error::Usage(_) | Error::Interrupted(_) | Error::Local { .. } => None,
            Error::Target(e) => e.hint(),
            Error::Connect(e) => e.hint(),
            Error::Call(e) => Some(e.hint()),
            Error::Exec(e) => e.hint(),
            Error::Lifecycle(e) => e.hint(),
            Error::Workspace(e) => e.hint(),
            Error::Hook(e) => e.hint(),
            Error::Mux(e) => e.hint(),
            Error::State(e) => e.hint(),
            Error::Backend(e) => e.hint(),
            Error::Install(e) => e.hint(),
            Error::Sync(e) => e.hint(),
            Error::Live(e) => e.hint(),
            Error::Config(e) => e.hint(),
            Error::Forward(e) => e.hint(),
            Error::Net(e) => e.hint(),
            Error::Git(e) => e.hint(),
            Error::Session(e) => e.hint(),
            Error::Warm(e) => e.hint(),
            Error::Fork(e) => e.hint(),
            Error::Mcp(e) => e.hint(),
            Error::Plan(e) => e.hint(),
        }
    }

    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            // As if the signal had killed hutch, which is what the user asked.
            Error::Interrupted(signal) | Error::Exec(ExecError::Interrupted(signal)) => exit::signaled(*signal as u32),
            // The hook's own code, as `run` passes on its command's.
            Error::Hook(e) | Error::Lifecycle(LifecycleError::Hook(e)) => e.exit_code().unwrap_or(exit::HUTCH_FAILED),
            _ => exit::HUTCH_FAILED,
        }
    }
}
