//! hutch, the host side: the CLI's building blocks.
//!
//! - [`transport`] connects to an agent over any supported address;
//! - [`exec`] drives one remote process from the local terminal or pipes;
//! - [`sync`] keeps `--ro` snapshots equal to the host tree, and diffs them;
//! - [`sessions`] lists, waits for and signals a VM's sessions;
//! - [`cmd`] has one module per subcommand, [`cli`] their flags;
//! - [`error`] and [`exit`] define failures and exit codes in one place.

pub mod agent_install;
pub mod backend;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod doctor;
pub mod error;
pub mod exec;
pub mod exit;
pub mod forward;
pub mod hooks;
pub mod lifecycle;
pub mod mux;
pub mod prepare;
pub mod sessions;
pub mod state;
pub mod sync;
pub mod target;
pub mod transport;
