//! Why a tool call failed, and how the client is told: arguments it should
//! not have sent are a JSON-RPC error (`-32602`, invalid params), as the
//! MCP specification asks for protocol errors; everything else is a tool
//! result with `isError` set, whose text says what failed and what to do,
//! so the model can act on it.

use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock};

use super::run::RunError;
use super::vm::VmError;
use crate::net::NetError;
use crate::sessions::SessionError;
use crate::sync::SyncError;
use crate::transport::CallError;

/// A failed tool call.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments are not what the tool takes (answered as invalid params).
    #[error("{0}")]
    Invalid(String),
    /// The agent could not be reached, or the VM not started.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A command in the guest did not run to its end.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The agent failed a call.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A session could not be started, found or used.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The `--ro` snapshot could not be diffed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The VM's network state could not be read.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The agent answered what the protocol does not allow (an exit code
    /// outside 0-255, a signal that is none): the VM's agent is not to be
    /// believed, so the call fails rather than report a made-up result.
    #[error(transparent)]
    Protocol(#[from] crate::untrusted::protocol::ProtocolError),
    /// The guest refused or failed what the tool asked (its words, escaped).
    #[error("{0}")]
    Guest(String),
    /// A program the tool runs in the guest is not installed there.
    #[error("{program} is not installed in the guest ({needed_for})")]
    Missing {
        /// The program.
        program: &'static str,
        /// What it is needed for, and where it usually comes from.
        needed_for: &'static str,
    },
    /// The tool does not apply to this VM or agent.
    #[error("{0}")]
    NotApplicable(String),
    /// The client cancelled the call.
    #[error("cancelled by the client")]
    Cancelled,
}

impl ToolError {
    /// What the user (or the model) can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ToolError::Invalid(_) | ToolError::Guest(_) | ToolError::NotApplicable(_) | ToolError::Cancelled => None,
            ToolError::Vm(e) => e.hint(),
            ToolError::Run(e) => e.hint(),
            ToolError::Call(e) => Some(e.hint()),
            ToolError::Session(e) => e.hint(),
            ToolError::Sync(e) => e.hint(),
            ToolError::Net(e) => e.hint(),
            ToolError::Protocol(_) => {
                Some("the VM's agent is not answering as hutch's agent does; `hutch down` and `hutch up` restart it".into())
            }
            ToolError::Missing { .. } => Some(
                "add it to the image (Debian: `packages = [...]` under [image] in ~/.config/hutch/config.toml, then `cargo xtask image`)"
                    .into(),
            ),
        }
    }

    /// The answer for the client.
    pub fn into_result(self) -> Result<CallToolResult, ErrorData> {
        if let ToolError::Invalid(message) = self {
            return Err(ErrorData::invalid_params(message, None));
        }
        // Messages may quote the guest (a status, a console): escaped and bounded.
        let mut text = format!("error: {}", super::guest_text::meta(&self.to_string()));
        if let Some(hint) = self.hint() {
            text.push_str("\nhint: ");
            text.push_str(&super::guest_text::meta(&hint));
        }
        Ok(CallToolResult::error(vec![ContentBlock::text(text)]))
    }
}
