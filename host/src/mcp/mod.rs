//! `hutch mcp`: a VM as the sandboxed tool of any MCP client (issue 29).
//!
//! It serves the Model Context Protocol over stdio with the official Rust
//! SDK (rmcp): a host coding agent (Claude Code, Codex, Cursor…) gets tools
//! that act in a VM instead of on the host, through the agent connection
//! every hutch command uses.
//!
//! - [`stdio`]: the protocol's own descriptors, so stdout stays protocol only;
//! - [`server`]: the handler (tool list, one task per call, the audit line);
//! - [`tools`]: the tools, each family in its file with its schemas;
//! - [`vm`]: reaching the agent, booting the VM as `hutch up` would;
//! - [`call`]: one call's context; [`run`]: a guest command within bounds,
//!   with progress ([`progress`]) and cancellation; [`capture`]: the caps;
//! - [`guest_text`]: escaping what the guest says; [`limits`]: every bound;
//! - [`error`]: what a failed call tells the client.
//!
//! Trust: the client is the host user's own agent and is trusted as the CLI
//! is (it may run anything in the VM, read and write anything there). The
//! guest is not: what comes back is bounded, metadata is escaped, no host
//! path is derived from it, and nothing from it reaches the host's files.

pub mod call;
pub mod capture;
pub mod error;
pub mod guest_text;
pub mod limits;
pub mod progress;
pub mod run;
pub mod server;
pub mod stdio;
pub mod tools;
pub mod vm;

use server::Server;
use vm::Place;

/// Why `hutch mcp` could not serve.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The agent or VM to serve could not be worked out.
    #[error(transparent)]
    Place(#[from] vm::VmError),
    /// The standard descriptors could not be set up.
    #[error("setting up stdin and stdout for the protocol: {0}")]
    Stdio(#[from] std::io::Error),
    /// The client's first messages were not an MCP handshake.
    #[error("the MCP handshake failed: {0}")]
    Handshake(#[source] Box<rmcp::service::ServerInitializeError>),
    /// The server's task ended abnormally.
    #[error("the MCP server stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

impl McpError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            McpError::Place(e) => e.hint(),
            McpError::Handshake(_) => Some("`hutch mcp` speaks MCP on stdin/stdout: start it from an MCP client (see docs/mcp.md)".into()),
            McpError::Stdio(_) | McpError::Stopped(_) => None,
        }
    }
}

/// Serves MCP on stdin/stdout for `place` until the client leaves.
pub async fn serve(place: Place) -> Result<(), McpError> {
    let stdio = stdio::claim()?;
    let env = call::Env::load(vm::config_dir(&place).as_deref());
    Server::new(place, env).run(stdio.input, stdio.output).await
}
