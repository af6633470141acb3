//! The wire protocol between `hutch` (host) and `hutch-agent` (guest).
//!
//! `v1` is generated from `hutch/v1/agent.proto` at build time; read that file
//! for what each message means. [`tart`] is Tart's guest-agent service
//! (`tart/agent.proto`), which hutch-agent also serves so `tart exec` works. [`addr`] is the one place that parses agent
//! addresses (`unix://`, `tcp://`, `vsock://`, `hvsock://`), so the host and the
//! agent agree on their syntax; [`mountinfo`] parses Linux mount tables for both.

pub mod addr;
pub mod mountinfo;
pub mod rules;
pub mod size;
pub mod tree;
pub mod unix_socket;
pub mod watch;

/// Generated types and gRPC stubs for the `hutch.v1` package.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("hutch.v1");
}

/// Generated types and gRPC stubs for Tart's guest-agent service (`Agent`,
/// no package: its method paths are `/Agent/Exec`, `/Agent/ResolveIP`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod tart {
    // prost names the file of the package-less proto "_".
    tonic::include_proto!("_");
}

/// Protocol level this build speaks; reported in `InfoResponse.protocol`.
pub const PROTOCOL: u32 = 1;

/// The vsock port the agent listens on in a guest by default. 8080 is the port
/// that Tart's `control.sock` proxies to, so one port serves every backend.
pub const DEFAULT_VSOCK_PORT: u32 = 8080;

/// Largest chunk of stdin or forwarded bytes read and sent in one message (64 KiB).
pub const MAX_CHUNK: usize = 64 * 1024;

/// Largest HTTP/2 frame either side accepts (1 MiB; the protocol default is
/// 16 KiB): a 256 KiB output chunk travels as one frame, not sixteen.
pub const MAX_FRAME_SIZE: u32 = 1024 * 1024;

/// HTTP/2 flow-control window per stream (8 MiB): room for a fast sender to
/// keep going while the receiver's window updates are on their way.
pub const STREAM_WINDOW: u32 = 8 * 1024 * 1024;

/// HTTP/2 flow-control window per connection (16 MiB).
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
