//! Properties of the validators, over arbitrary input: whatever the guest
//! sends, an accepted path stays below its root and a shown text holds no
//! character that acts on a terminal or forges a line.

use std::path::{Component, Path};

use proptest::prelude::*;

use super::path::GuestPath;
use super::{limits, protocol, text};

/// Bytes biased towards what breaks paths: separators, dots, controls.
fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'/'),
        4 => Just(b'.'),
        6 => b'a'..=b'z',
        1 => Just(b'\n'),
        1 => Just(0u8),
        1 => Just(0x1b),
        1 => Just(0xc2),
        1 => Just(0x9b),
        2 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..64)
}

proptest! {
    #[test]
    fn an_accepted_path_is_plain_names_below_its_root(bytes in path_bytes()) {
        if let Ok(path) = GuestPath::new(bytes.clone()) {
            prop_assert!(!bytes.is_empty() && bytes[0] != b'/');
            prop_assert!(path.as_path().components().all(|c| matches!(c, Component::Normal(_))));
            prop_assert!(path.components().all(|name| !name.is_empty() && name != b"." && name != b".."));
            prop_assert!(bytes.iter().all(|b| *b >= 0x20 && *b != 0x7f));
            let root = Path::new("/ws");
            prop_assert!(root.join(path.as_path()).starts_with(root));
            prop_assert!(!text::shown_bytes(path.as_bytes()).chars().any(text::is_unsafe));
        }
    }

    #[test]
    fn plain_names_joined_are_accepted(names in prop::collection::vec("[a-zA-Z0-9_ .-]{1,20}", 1..8)) {
        let joined = names.join("/");
        let plain = names.iter().all(|n| n != "." && n != "..");
        prop_assert_eq!(GuestPath::from_bytes(joined.as_bytes()).is_ok(), plain);
    }

    #[test]
    fn shown_text_holds_nothing_unsafe_and_stays_short(s in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let max = limits::SHOWN_BYTES.max_usize();
        for shown in [text::shown(&s), text::shown_bytes(&bytes), text::escaped(&s).into_owned()] {
            prop_assert!(!shown.chars().any(text::is_unsafe), "{:?}", shown);
        }
        prop_assert!(text::shown(&s).len() <= max + 32);
        prop_assert!(text::shown_bytes(&bytes).len() <= max + 32);
        prop_assert!(!text::escaped_lines(&s).chars().any(|c| c != '\n' && text::is_unsafe(c)));
    }

    #[test]
    fn json_escaping_keeps_the_value(s in any::<String>()) {
        let json = serde_json::to_string(&s).unwrap();
        let safe = text::json_safe(&json);
        prop_assert!(!safe.chars().any(text::is_unsafe));
        prop_assert_eq!(serde_json::from_str::<String>(&safe).unwrap(), s);
    }

    #[test]
    fn exit_codes_are_exactly_zero_to_255(code in any::<i32>()) {
        prop_assert_eq!(protocol::exit_code(code).is_ok(), (0..=255).contains(&code));
    }
}

proptest! {
    #[test]
    fn the_wire_count_never_panics_or_undercounts(bytes in prop::collection::vec(any::<u8>(), 0..2048), n in 0usize..70_000) {
        let _ = super::wire::check(&bytes, super::wire::LIST_SESSIONS);
        use prost::Message;
        let list = hutch_proto::v1::ListSessionsResponse { sessions: vec![Default::default(); n], ..Default::default() };
        prop_assert_eq!(super::wire::check(&list.encode_to_vec(), super::wire::LIST_SESSIONS).is_ok(), n as u64 <= limits::MESSAGE_ITEMS.max);
    }
}
