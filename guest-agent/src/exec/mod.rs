//! Running processes for the host: the heart of the agent.
//!
//! - [`session`] drives one exec from `Start` to `Exited`;
//! - [`spawn`] starts the child in its own session, with pipes or a PTY;
//! - [`output`] pumps stdout/stderr to the client with backpressure;
//! - [`input`] applies stdin, EOF, resizes and signals from the client;
//! - [`pty`] and [`fd`] are the terminal and non-blocking fd plumbing;
//! - [`registry`] tracks live process groups so agent shutdown kills them;
//! - [`user`] is who commands run as (`--exec-user`).

pub mod fd;
pub mod input;
pub mod output;
pub mod pty;
pub mod registry;
pub mod session;
pub mod spawn;
pub mod user;
