//! Every limit the agent puts on what a client (or the guest's files) can
//! make it hold or do, in one place, each with the reason for its value.
//!
//! The agent's clients are the host's `hutch` and tools such as `tart exec`,
//! but it treats what arrives as hostile all the same: a bug on the host, a
//! token that leaked, a guest process that found the socket. None of these
//! may make it hold unbounded memory, descriptors or threads, or hang a call.
//! The README's "Limits" table lists these values; change both together.

/// Largest gRPC message the agent decodes (tonic's default, stated here so it
/// is one of the documented limits): a `stdin`, `archive` or `delete` message
/// over it ends its call with RESOURCE_EXHAUSTED. hutch sends 64 KiB stdin
/// chunks, 256 KiB archive chunks and 4096 paths per delete list.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of an untrusted string (a path, a signal name, an id) that a log
/// line or a status message shows before it is cut: enough to recognise a
/// path, short enough that a status fits in any client's header limits and
/// a log line stays one line.
pub const SHOWN_BYTES: usize = 200;
