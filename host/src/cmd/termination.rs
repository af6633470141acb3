//! Waiting for the signals that end a long-running command of hutch's own
//! (`hutch forward`, `hutch run` while it boots or cleans up): one place, so
//! every such command stops on the same three.

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

use crate::error::Error;

/// Resolves with the first SIGINT, SIGTERM or SIGHUP hutch receives.
pub async fn termination() -> Result<Signal, Error> {
    let listen = |kind| signal(kind).map_err(|e| Error::local("listening for signals", e));
    let (mut int, mut term, mut hup) = (listen(SignalKind::interrupt())?, listen(SignalKind::terminate())?, listen(SignalKind::hangup())?);
    Ok(tokio::select! {
        _ = int.recv() => Signal::SIGINT,
        _ = term.recv() => Signal::SIGTERM,
        _ = hup.recv() => Signal::SIGHUP,
    })
}
