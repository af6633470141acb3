//! Why `hutch fork` could not fork a VM, besides its backend's and
//! lifecycle's reasons. Apart from the command (`crate::cmd::fork`) so
//! that the CLI's error ([`crate::error`]) can hold it without naming a
//! command that returns it.

use crate::state::VmName;

/// Why a VM could not be forked (besides its backend's and lifecycle's reasons).
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// The running parent's guest could not write its disk out first.
    #[error("`sync` in {name} failed ({why}), so its disk may not hold what its programs wrote")]
    Flush {
        /// The parent.
        name: VmName,
        /// How it failed.
        why: String,
    },
    /// The children's names would not be valid VM names.
    #[error("{prefix:?} cannot start a VM name: use --name-prefix with a shorter name of a-z, 0-9, '-' and '_'")]
    BadPrefix {
        /// The prefix.
        prefix: String,
    },
}

impl ForkError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ForkError::Flush { name, .. } => Some(format!("stop it (`hutch down {name}`) and fork it stopped")),
            ForkError::BadPrefix { .. } => None,
        }
    }
}
