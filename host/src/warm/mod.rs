//! Warm pools: VMs booted ahead of time for one project and its settings,
//! so `hutch run --rm` starts in the time of a command, not of a boot.
//!
//! A ready VM is the VM a cold `run --rm` would boot, made earlier: a fresh
//! boot of the same image and settings (so its disk is clean, and its
//! machine id and kernel RNG are its own), with the project shared and
//! mounted at its path and its heavy dirs on VM-local disk. It is marked in
//! its record (`VmRecord::pool`) with its project and a key of everything
//! that decides its contents ([`key`]). A run whose key matches takes one
//! ([`pool::take`]) and does what a cold boot would only do now: prepares the
//! project again (heavy dirs its files imply now), starts the VM's network
//! process with the run's own environment (this run's secret values, fresh
//! placeholders), brings a `--ro` snapshot up to date, runs the runtime
//! hook, then the command; and deletes the VM after, as always.
//!
//! A project's pool follows its standing order ([`target`]): `hutch warm
//! [--count N]` sets it, and so does `[warm] count = N` in the
//! configuration at every `run --rm`. Its keeper ([`keeper`], a host daemon
//! per project) boots VMs until the order is met, one at a time, and drops
//! ready VMs whose settings are no longer the order's (the configuration
//! changed), so an edit to `hutch.toml` never hands a run a VM of the old
//! settings.

pub mod keeper;
pub mod key;
pub mod pool;
pub mod target;

use std::path::PathBuf;

/// Why a warm pool could not be read, changed or filled.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What hutch was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A pool's standing order is unreadable.
    #[error("the warm pool's settings {} are unreadable: {why}", path.display())]
    BadTarget {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl WarmError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> WarmError {
        WarmError::Io { what: what.into(), source }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            WarmError::Io { .. } => None,
            WarmError::BadTarget { .. } => Some("drop the pool with `hutch warm --count 0` and make it again".into()),
        }
    }
}
