//! The protocol's own descriptors. An MCP client reads JSON-RPC from the
//! server's stdout, so a stray byte there (a message printed by shared code,
//! output of a hook run while the VM starts) would break the session. At
//! start-up `hutch mcp` takes private copies of its stdin and stdout for the
//! protocol, then points descriptor 1 at stderr and descriptor 0 at
//! /dev/null: whatever else writes to "stdout" lands in the client's log of
//! the server's stderr, and nothing else can read the client's messages.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// The protocol's input and output.
pub struct Stdio {
    /// The client's messages (the original stdin).
    pub input: tokio::fs::File,
    /// The answers (the original stdout).
    pub output: tokio::fs::File,
}

/// Takes stdin and stdout for the protocol (see the module's documentation).
pub fn claim() -> io::Result<Stdio> {
    // Close-on-exec copies, so no child (a VM manager, a daemon) inherits them.
    let input = io::stdin().as_fd().try_clone_to_owned()?;
    let output = io::stdout().as_fd().try_clone_to_owned()?;
    let null = File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(io::stderr())?;
    Ok(Stdio { input: tokio::fs::File::from_std(File::from(input)), output: tokio::fs::File::from_std(File::from(output)) })
}
