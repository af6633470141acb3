//! Every connection the agent accepts, on every listener: accepted one
//! slot at a time, read through a filter, and given up if it never speaks.
//!
//! - [`accept`]: the accept loop of one listener, at most
//!   [`limits::MAX_CONNECTIONS`] connections at once (the rest wait in the
//!   kernel's backlog, where they cost the agent nothing), backing off
//!   while the agent is out of descriptors instead of spinning;
//! - [`inbound`]: one connection, whose client bytes go through
//!   [`frames`] and whose handshake must be done within
//!   [`limits::HANDSHAKE_TIMEOUT`];
//! - [`frames`] and [`headers`]: the frame scanner and the header-block
//!   rewriter that let any gRPC client in, whatever its `:authority`.

pub mod accept;
pub mod frames;
pub mod headers;
pub mod inbound;
#[cfg(test)]
mod props;
