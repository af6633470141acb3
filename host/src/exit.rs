//! hutch's exit codes, in one place (the exit-code table in the README). Scripts rely on them:
//! the command's own code when it ran, and codes that `env(1)`, `timeout(1)`
//! and shells already use when it did not.

/// `--timeout` expired and the process group was killed (as `timeout(1)`).
pub const TIMED_OUT: u8 = 124;
/// hutch itself failed: no agent, lost connection, bad flags, protocol error.
pub const HUTCH_FAILED: u8 = 125;
/// The command exists but cannot be executed.
pub const NOT_EXECUTABLE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;
/// `hutch doctor` found something broken (a check failed).
pub const DOCTOR_FOUND_FAILURES: u8 = 1;

/// The code for a process killed by signal `number`: 128 + N, as shells report.
pub fn signaled(number: u32) -> u8 {
    u8::try_from(128 + number.min(127)).unwrap_or(u8::MAX)
}
