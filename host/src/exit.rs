//! hutch's exit codes, in one place (the exit-code table in the README). Scripts rely on them:
//! the command's own code when it ran, and codes that `env(1)`, `timeout(1)`
//! and shells already use when it did not.

use std::str::FromStr;

use hutch_proto::v1::{Exited, exited};
use nix::sys::signal::Signal;

use crate::untrusted::{ProtocolError, protocol};

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

/// The code for a remote process that ended as `exited` says: its own code,
/// 128 + N for signal N (by the host's numbering of the guest's signal name,
/// so `128+N` means what local tools expect even when guest and host number
/// signals differently), [`TIMED_OUT`] when the agent killed it for its
/// timeout. An end the protocol does not allow (a code outside 0..=255, a
/// signal that is none, neither) is a [`ProtocolError`]: hutch's own
/// failure ([`HUTCH_FAILED`]), never a code the command could have had.
pub fn of_exited(exited: &Exited) -> Result<u8, ProtocolError> {
    let code = match exited.status {
        Some(exited::Status::Code(code)) => protocol::exit_code(code)?,
        Some(exited::Status::Signal(number)) => {
            let (number, name) = protocol::signal(number, &exited.signal_name)?;
            signaled(local_signal_number(name).unwrap_or(number))
        }
        None => return Err(ProtocolError::Unexpected("reported an end with neither an exit code nor a signal")),
    };
    Ok(if exited.timed_out { TIMED_OUT } else { code })
}

/// The host's number for a guest signal name.
fn local_signal_number(name: &str) -> Option<u32> {
    if name.is_empty() {
        return None;
    }
    Signal::from_str(&format!("SIG{name}")).ok().map(|s| s as u32)
}
