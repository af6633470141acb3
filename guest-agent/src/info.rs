//! The `Info` call: who and where this agent is.

use std::time::Instant;

use hutch_proto::v1::InfoResponse;

/// Capabilities this agent announces in `InfoResponse.capabilities`.
pub const CAPABILITIES: &[&str] = &[
    "exec.pipes",
    "exec.pty",
    "exec.timeout",
    "exec.signal",
    "exec.sessions",
    "prepare",
    "forward",
    "sync",
    "sync.diff",
    "sync.watch",
    "egress",
    "egress.routes",
    "egress.link",
    "git.guard",
];

/// Builds the `Info` answer; `started` is when the agent started.
pub fn describe(started: Instant) -> InfoResponse {
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let kernel = nix::sys::utsname::uname().ok().and_then(|u| u.release().to_str().map(str::to_owned)).unwrap_or_default();
    InfoResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        protocol: hutch_proto::PROTOCOL,
        capabilities: CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        uptime_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        hostname,
        pid: std::process::id(),
        kernel,
    }
}
