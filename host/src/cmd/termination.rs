//! Waiting for the signals that end a long-running command of hutch's own
//! (`hutch forward`, `hutch run` while it boots or cleans up): one place, so
//! every such command stops on the same three (see
//! `crate::exec::signals::termination`).

use nix::sys::signal::Signal;

use crate::error::Error;

/// Resolves with the first SIGINT, SIGTERM or SIGHUP hutch receives.
pub async fn termination() -> Result<Signal, Error> {
    crate::exec::signals::termination().await.map_err(|e| Error::local("listening for signals", e))
}
