//! Values from the agent that the protocol constrains (enums, exit codes,
//! signals, which message may come when), checked before they mean
//! anything to the host.
//!
//! protobuf lets an enum field hold any `i32` and an `int32` any value, and
//! an agent may send any message in any order. A value outside what the
//! protocol allows is a [`ProtocolError`], which hutch reports as its own
//! failure (exit 125, "hutch itself failed"), never as a command's success:
//! an `Exited.code` of 256 is not exit 0.

use super::limits::Exceeded;
use super::path::PathError;
use super::text;

/// The agent broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// An enum value this hutch does not know.
    #[error("the agent sent {what} {value}, which is not one this hutch knows")]
    UnknownValue {
        /// Which field.
        what: &'static str,
        /// The value.
        value: i64,
    },
    /// An exit code outside 0..=255.
    #[error("the agent reported exit code {0}, but exit codes are 0 to 255")]
    ExitCode(i32),
    /// A signal number or name no process can die of.
    #[error("the agent reported a process killed by signal {0}, which is not a signal")]
    Signal(String),
    /// A message that has no place where it came.
    #[error("the agent {0}")]
    Unexpected(&'static str),
    /// An answer refused while it was decoded (too many items, not protobuf).
    #[error("{0}")]
    Refused(String),
    /// A cap was exceeded.
    #[error(transparent)]
    Limit(#[from] Exceeded),
    /// A path that cannot be a path of the project.
    #[error("the agent sent the path {path}: {why}")]
    Path {
        /// The path, escaped and cut.
        path: String,
        /// Why it was refused.
        #[source]
        why: PathError,
    },
}

impl ProtocolError {
    /// A refused path, shown escaped.
    pub fn path(bytes: &[u8], why: PathError) -> ProtocolError {
        ProtocolError::Path { path: text::shown_bytes(bytes), why }
    }
}

/// The enum value `value` of field `what`, or why not.
pub fn known<E: TryFrom<i32>>(what: &'static str, value: i32) -> Result<E, ProtocolError> {
    E::try_from(value).map_err(|_| ProtocolError::UnknownValue { what, value: value.into() })
}

/// An exit code as the agent reports it (`Exited.code`): 0 to 255.
pub fn exit_code(code: i32) -> Result<u8, ProtocolError> {
    u8::try_from(code).map_err(|_| ProtocolError::ExitCode(code))
}

/// A signal as the agent reports it: its number (1 to 127, as in a wait
/// status) and its name without `SIG` (`""` or up to 16 of `A-Z0-9+`, e.g.
/// `RTMIN+3`).
pub fn signal(number: u32, name: &str) -> Result<(u32, &str), ProtocolError> {
    let name_ok = name.len() <= 16 && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+');
    if !(1..=127).contains(&number) {
        return Err(ProtocolError::Signal(number.to_string()));
    }
    if !name_ok {
        return Err(ProtocolError::Signal(text::shown(name)));
    }
    Ok((number, name))
}

#[cfg(test)]
mod tests {
    use hutch_proto::v1::StartError;

    use super::*;

    #[test]
    fn values_outside_the_protocol_are_errors() {
        assert_eq!(exit_code(0).unwrap(), 0);
        assert_eq!(exit_code(255).unwrap(), 255);
        for bad in [256, -1, i32::MAX, i32::MIN] {
            assert!(matches!(exit_code(bad), Err(ProtocolError::ExitCode(c)) if c == bad));
        }
        assert_eq!(signal(15, "TERM").unwrap(), (15, "TERM"));
        assert_eq!(signal(34, "RTMIN+0").unwrap().0, 34);
        assert!(signal(0, "TERM").is_err());
        assert!(signal(128, "").is_err());
        let err = signal(9, "KILL\n2026 exec exit 0").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(matches!(known::<StartError>("a start error", 4), Ok(StartError::InvalidRequest)));
        let err = known::<StartError>("a start error", 99).unwrap_err();
        assert_eq!(err.to_string(), "the agent sent a start error 99, which is not one this hutch knows");
    }
}
