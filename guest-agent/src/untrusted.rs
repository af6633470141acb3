//! Untrusted text as the agent shows it back: in its log, and in the gRPC
//! statuses it answers with.
//!
//! Paths, names and ids come from the client, or from the guest's files, and
//! may hold anything: a newline that forges a log line, an ANSI escape that
//! rewrites the terminal the log is read on, a gigabyte that fills the disk
//! or a status header. [`shown`] escapes every control character and cuts
//! the text at [`limits::SHOWN_BYTES`]; [`request_error`] turns a request the
//! agent could not decode into a status that says so.

use std::fmt::Write;

use tonic::{Code, Status};

use crate::limits;

/// `bytes` as printable text: invalid UTF-8 replaced, control characters
/// escaped (`\n`, `\u{1b}`), and cut after [`limits::SHOWN_BYTES`] with the
/// full length noted, so a log line or a status stays one short line.
pub fn shown(bytes: &[u8]) -> String {
    let cut = bytes.len() > limits::SHOWN_BYTES;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(limits::SHOWN_BYTES)]);
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        let _ = write!(out, "… ({} bytes)", bytes.len());
    }
    out
}

/// [`shown`] for text that is already a `str`.
pub fn shown_str(text: &str) -> String {
    shown(text.as_bytes())
}

/// The status for a request stream that failed to decode (tonic reports
/// undecodable protobuf as INTERNAL and an oversized message as
/// OUT_OF_RANGE): INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for a message over
/// [`limits::MAX_MESSAGE_BYTES`], with tonic's reason.
pub fn request_error(status: &Status) -> Status {
    let why = shown_str(status.message());
    match status.code() {
        Code::OutOfRange | Code::ResourceExhausted => {
            Status::resource_exhausted(format!("a request message is larger than the agent accepts: {why}"))
        }
        _ => Status::invalid_argument(format!("cannot decode the request: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_is_cut() {
        assert_eq!(shown(b"TERM"), "TERM");
        assert_eq!(shown(b"a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(shown(b"caf\xc3\xa9 \xff"), "café \u{fffd}");
        let long = shown(&[b'x'; 100_000]);
        assert!(long.len() < limits::SHOWN_BYTES + 32, "{}", long.len());
        assert!(long.ends_with("… (100000 bytes)"), "{long}");
    }

    #[test]
    fn undecodable_requests_are_invalid_arguments_and_oversized_ones_exhaust_resources() {
        assert_eq!(request_error(&Status::internal("invalid string value")).code(), Code::InvalidArgument);
        assert_eq!(request_error(&Status::out_of_range("too large")).code(), Code::ResourceExhausted);
    }
}
