//! `hutch mcp [--name NAME | --addr ADDR]`: serve MCP on stdin/stdout until
//! the client leaves (see `crate::mcp`).

use crate::cli::McpArgs;
use crate::error::Error;
use crate::mcp::{self, McpError, vm::Place};

/// Runs `hutch mcp`; exits 0 when the client closes the session.
pub async fn run(args: McpArgs) -> Result<u8, Error> {
    let place = Place::resolve(args.name.as_ref(), args.agent.addr.as_ref(), args.agent.token_file.as_deref()).map_err(McpError::from)?;
    mcp::serve(place).await?;
    Ok(0)
}
