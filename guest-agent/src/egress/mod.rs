//! The guest's way out: a listener on the guest's loopback whose connections
//! are carried, unread, to the host, which decides where each may go.
//!
//! The agent enforces nothing here. The guest is untrusted, and once it is
//! compromised so is the agent, so every rule lives on the host; the agent
//! only pipes bytes and tells guest programs where the pipe is:
//!
//! - [`listener`] binds the listener for as long as the host's `EgressListen`
//!   call lasts and hands each connection to an `EgressAccept` stream;
//! - [`route`] checks the extra listeners the host asks for (its `tcp://`
//!   rules) and the `/etc/hosts` names that lead guest programs to them;
//! - [`link`] brings up the interface that leads straight to the host's
//!   proxy, when the host offers one (QEMU guests);
//! - [`env`] holds the variables every process the agent starts gets (the
//!   proxy, secrets' placeholders, the trust bundle);
//! - [`guest_config`] writes the trust bundle and the guest-wide
//!   configuration (`/etc/environment`, npm, pip, git) for programs the agent
//!   does not start.

pub mod env;
pub mod guest_config;
pub mod link;
pub mod listener;
pub mod route;

pub use listener::Egress;
