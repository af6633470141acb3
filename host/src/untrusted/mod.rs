//! The host's edge against the guest: everything an agent answers is
//! untrusted input, checked here before hutch uses, prints, logs or waits
//! for it. It mirrors the agent's own `untrusted.rs` and `limits.rs`, which
//! distrust what the host sends.
//!
//! The agent runs in the guest, and root in the guest can replace it with
//! any program that speaks `hutch.v1.Agent`. So:
//!
//! - [`limits`]: every cap on sizes and counts, with its reason, and the
//!   typed error ([`limits::Exceeded`]) that names the cap;
//! - [`path`]: a path from the guest becomes a [`GuestPath`] (relative,
//!   plain names, no control characters, bounded) before it is used;
//! - [`beneath`]: such a path is opened, written or removed below a folder
//!   the host owns one name at a time, never through a symlink;
//! - [`text`]: guest text is escaped (and cut) wherever it reaches a
//!   terminal or a log;
//! - [`wire`]: answers whose repeated fields could decode into far more
//!   memory than their size have their items counted before decoding;
//! - [`deadline`]: how long hutch waits for an agent, so a silent one
//!   cannot hold a command (a command's own run time is never cut);
//! - [`protocol`]: enums, exit codes and signals outside the protocol are a
//!   [`ProtocolError`] (hutch's own failure, exit 125), never a success.

pub mod beneath;
pub mod deadline;
pub mod limits;
pub mod path;
pub mod protocol;
pub mod text;
pub mod wire;

#[cfg(test)]
mod proptests;

pub use beneath::{Beneath, BeneathError};
pub use limits::{Exceeded, Limit};
pub use path::{GuestPath, PathError};
pub use protocol::ProtocolError;
