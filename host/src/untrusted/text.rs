//! Text from the guest as the host shows it: on the user's terminal, in an
//! error or a warning, in a log line.
//!
//! Guest text (a version string, a hostname, a gRPC status message, a
//! start failure, a file name) may hold anything: an escape sequence that
//! rewrites the terminal or sets the clipboard (OSC 52), a carriage return
//! or newline that forges the next line of a log, a bidirectional override
//! that shows a name backwards, or a gigabyte. [`shown`] escapes every such
//! character and cuts the result at [`limits::SHOWN_BYTES`]; [`escaped`]
//! escapes without cutting, for text hutch composed that may have guest
//! text inside (the last line `main` prints). [`json_safe`] does the same
//! for a JSON line, where an escape is a JSON escape, so the stored value
//! is unchanged.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::limits;

/// Whether `c` must not reach a terminal or a log as it is: control
/// characters (C0, DEL, C1: ESC, CSI, OSC…), Unicode's line and paragraph
/// separators, and the invisible marks that reorder or hide text
/// (bidirectional overrides and isolates, zero-width joiners, the BOM).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
}

/// `text` with every [unsafe](is_unsafe) character escaped (`\n`,
/// `\u{1b}`), cut after [`limits::SHOWN_BYTES`] of output with its full
/// length noted: one line that says what the guest sent and does nothing
/// else.
pub fn shown(text: &str) -> String {
    cut(text, limits::SHOWN_BYTES.max_usize())
}

/// [`shown`] for bytes that may not be UTF-8 (file names): invalid
/// sequences become U+FFFD.
pub fn shown_bytes(bytes: &[u8]) -> String {
    let limit = limits::SHOWN_BYTES.max_usize();
    // No need to convert more than can be shown (4 bytes per character at most).
    let head = &bytes[..bytes.len().min(limit.saturating_mul(4))];
    noting(&String::from_utf8_lossy(head), limit, bytes.len())
}

/// `text` escaped as [`shown`] does, cut after `max` bytes of output.
pub fn cut(text: &str, max: usize) -> String {
    noting(text, max, text.len())
}

/// `text` (the start of `total` bytes) escaped and cut after `max` bytes
/// of output; the length is noted when anything was left out.
fn noting(text: &str, max: usize, total: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 16);
    let mut whole = total <= text.len();
    for c in text.chars() {
        let before = out.len();
        push(&mut out, c);
        if out.len() > max {
            out.truncate(before);
            whole = false;
            break;
        }
    }
    if !whole {
        let _ = write!(out, "… ({total} bytes)");
    }
    out
}

/// `text` cut (not escaped) after at most `max` bytes, on a character
/// boundary, with its full length noted: for a value stored where it is
/// escaped anyway (a JSON string), which must stay bounded.
pub fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// `text` with every [unsafe](is_unsafe) character escaped, whatever its
/// length: for lines hutch composed itself around guest text that was
/// already cut.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`escaped`] line by line: newlines stay (a hint of several lines, the
/// tail of a console), everything else unsafe is escaped.
pub fn escaped_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c == '\n' { out.push(c) } else { push(&mut out, c) }
    }
    Cow::Owned(out)
}

/// A serialized JSON value with the [unsafe](is_unsafe) characters JSON
/// leaves as they are (DEL, C1 controls, separators, bidirectional marks)
/// written as `\uXXXX` escapes: the same value, and a line that shows as
/// one plain line wherever it is printed (`hutch audit --json`, `cat`).
/// serde_json already escapes C0 controls, quotes and backslashes.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe(c) {
            // Every unsafe character is in the Basic Multilingual Plane.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn push(out: &mut String, c: char) {
    if is_unsafe(c) {
        out.extend(c.escape_default());
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_and_line_breaks_are_escaped() {
        assert_eq!(shown("hutch-agent 0.1.0"), "hutch-agent 0.1.0");
        assert_eq!(shown("a\nb\x1b]52;c;aGk=\x07"), "a\\nb\\u{1b}]52;c;aGk=\\u{7}");
        assert_eq!(shown("\u{9b}31m \u{202e}txt.exe \u{2028}"), "\\u{9b}31m \\u{202e}txt.exe \\u{2028}");
        assert_eq!(shown("café ✓"), "café ✓");
        assert_eq!(shown_bytes(b"caf\xc3\xa9 \xff\n"), "café \u{fffd}\\n");
    }

    #[test]
    fn long_text_is_cut_with_its_length() {
        let long = shown(&"x".repeat(100_000));
        assert!(long.len() < limits::SHOWN_BYTES.max_usize() + 32, "{}", long.len());
        assert!(long.ends_with("… (100000 bytes)"), "{long}");
        // Escapes count towards the cut, so escaping cannot blow it up.
        let escapes = shown(&"\x1b".repeat(100_000));
        assert!(escapes.len() < limits::SHOWN_BYTES.max_usize() + 32, "{}", escapes.len());
        let bytes = shown_bytes(&[b'y'; 1 << 20]);
        assert!(bytes.ends_with("… (1048576 bytes)"), "{bytes}");
        assert_eq!(cut("ab\u{e9}", 3), "ab… (4 bytes)");
    }

    #[test]
    fn lines_keep_their_newlines_and_json_keeps_its_value() {
        assert_eq!(escaped_lines("one\ntwo\r\x1b[2J"), "one\ntwo\\r\\u{1b}[2J");
        assert!(matches!(escaped("plain"), Cow::Borrowed(_)));
        let value = "a\u{85}b\u{202e}c\u{7f}";
        let json = serde_json::to_string(&value).unwrap();
        let safe = json_safe(&json);
        assert_eq!(safe, "\"a\\u0085b\\u202ec\\u007f\"");
        assert_eq!(serde_json::from_str::<String>(&safe).unwrap(), value);
    }
}
