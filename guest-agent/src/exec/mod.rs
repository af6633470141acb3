//! Running processes for the host: the heart of the agent.
//!
//! - [`stream`] drives one exec on its stream, from `Start` to `Exited`;
//! - [`finish`] is how every process the agent runs ends (output drained,
//!   then `Exited`), shared by a plain exec and a session;
//! - [`spawn`] starts the child in its own session, with pipes or a PTY;
//! - [`output`] pumps stdout/stderr to the client with backpressure;
//! - [`input`] applies stdin, EOF, resizes and signals from the client;
//! - [`pty`] and [`fd`] are the terminal and non-blocking fd plumbing;
//! - [`registry`] tracks live process groups so agent shutdown kills them;
//! - [`timeout`] is a group's time limit (SIGTERM, then SIGKILL);
//! - [`session_store`] keeps processes that outlive their stream
//!   (`--detach`, `--keep`) by name: [`kept`] owns one such process and its
//!   output [`ring`], [`attach`] serves one client of it, [`journal`] tells
//!   the next agent what ended with this one;
//! - [`user`] is who commands run as (`--exec-user`).

pub mod attach;
pub mod fd;
pub mod finish;
pub mod input;
pub mod journal;
pub mod kept;
pub mod output;
pub mod pty;
pub mod registry;
pub mod ring;
pub mod session_store;
pub mod spawn;
pub mod stream;
pub mod timeout;
pub mod user;
