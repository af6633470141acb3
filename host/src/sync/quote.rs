//! File names in a patch, quoted the way git quotes them, so `git apply`
//! reads exactly the name the change is about.
//!
//! git writes a name as it is unless it holds a double quote, a backslash,
//! a control character or a byte of 0x80 and above (with `core.quotePath`,
//! its default); then the whole name, prefix included, is put in double
//! quotes with C escapes (`\t`, `\n`, `\"`, `\\`) and other bytes as three
//! octal digits (`"a/caf\303\251"`). The paths hutch writes are
//! [`GuestPath`]s, which have no control characters, but the quoting does
//! not rely on that.

use std::fmt::Write as _;

use crate::untrusted::GuestPath;

/// `prefix` (`a/`, `b/`) and `path` as one name of a patch.
pub fn name(prefix: &str, path: &GuestPath) -> String {
    quoted(prefix, path.as_bytes())
}

/// `prefix` and `bytes` as git writes a name.
pub fn quoted(prefix: &str, bytes: &[u8]) -> String {
    let plain = |b: &u8| *b >= 0x20 && *b < 0x7f && *b != b'"' && *b != b'\\';
    if bytes.iter().all(plain) {
        return format!("{prefix}{}", String::from_utf8_lossy(bytes));
    }
    let mut out = String::with_capacity(bytes.len() + prefix.len() + 8);
    out.push('"');
    out.push_str(prefix);
    for b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\x07' => out.push_str("\\a"),
            b'\x08' => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\x0b' => out.push_str("\\v"),
            b'\x0c' => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b if plain(b) => out.push(char::from(*b)),
            b => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn plain_names_stay_and_others_are_quoted_as_git_does() {
        assert_eq!(quoted("a/", b"src/main.rs"), "a/src/main.rs");
        assert_eq!(quoted("b/", b"with space"), "b/with space");
        assert_eq!(quoted("a/", "caf\u{e9}".as_bytes()), "\"a/caf\\303\\251\"");
        assert_eq!(quoted("a/", b"say \"hi\"\\"), "\"a/say \\\"hi\\\"\\\\\"");
        assert_eq!(quoted("a/", b"x\ny\x1b"), "\"a/x\\ny\\033\"");
    }

    proptest! {
        #[test]
        fn a_quoted_name_is_one_line_of_printable_ascii(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let name = quoted("a/", &bytes);
            prop_assert!(name.bytes().all(|b| (0x20..0x7f).contains(&b)), "{:?}", name);
            // Quoted exactly when git would: then it starts and ends with a quote.
            let needs = bytes.iter().any(|b| *b < 0x20 || *b >= 0x7f || *b == b'"' || *b == b'\\');
            prop_assert_eq!(needs, name.starts_with('"') && name.ends_with('"') && name.len() >= 2);
        }
    }
}
