//! Text the guest chose, as `hutch mcp` reports it: names, paths, session
//! tags, error messages, what a command line looked like. The guest is not
//! trusted, so such metadata is bounded and its control characters are
//! escaped (an ANSI sequence or a newline in a file name reaches no terminal
//! or log as it is). Content the client asked for (a command's output, a
//! file's bytes) is not metadata: it is returned as it is, within its cap,
//! and JSON carries it safely.
//!
//! The escaping is the host's one edge for untrusted text
//! ([`crate::untrusted::text`]), with a bound that fits a whole path.

use serde_json::Value;

use crate::untrusted::text;

/// Bytes kept of one piece of metadata: a path is at most 4096 bytes on
/// Linux, anything longer is not a name.
pub const META_BYTES: usize = 4096;

/// `text` escaped as everywhere the host shows guest text, cut after
/// [`META_BYTES`] with its length noted.
pub fn meta(text: &str) -> String {
    text::cut(text, META_BYTES)
}

/// Bytes from the guest as metadata: invalid UTF-8 replaced, then [`meta`].
pub fn meta_bytes(bytes: &[u8]) -> String {
    meta(&String::from_utf8_lossy(&bytes[..bytes.len().min(META_BYTES * 4)]))
}

/// Every string in `value` (keys included) passed through [`meta`]: for
/// JSON built from what the agent reported.
pub fn meta_json(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(meta(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(meta_json).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (meta(&k), meta_json(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_escaped_and_bounded() {
        assert_eq!(meta("build\x1b[2J\nnext"), "build\\u{1b}[2J\\nnext");
        let long = "x".repeat(META_BYTES + 10);
        assert!(meta(&long).starts_with(&"x".repeat(META_BYTES - 64)) && meta(&long).len() < META_BYTES + 64, "{}", meta(&long).len());
        assert!(!meta("a\u{202e}b\u{2028}").chars().any(text::is_unsafe));
        assert_eq!(meta_bytes(b"a\xffb\x07"), "a\u{fffd}b\\u{7}");
        let json = meta_json(serde_json::json!({"tag\r": ["ok", "\x1b]0;pwned\x07"], "pid": 3}));
        assert_eq!(json, serde_json::json!({"tag\\r": ["ok", "\\u{1b}]0;pwned\\u{7}"], "pid": 3}));
    }
}
