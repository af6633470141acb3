//! Counting what a message from the agent will decode into, before it is
//! decoded.
//!
//! A protobuf message's memory is not its size: an empty `SessionInfo` is
//! two bytes on the wire and about 220 in memory, so a 4 MiB
//! `ListSessionsResponse` of empty sessions decodes into half a gigabyte.
//! Only repeated fields multiply like that (prost skips unknown fields and
//! merges repeated occurrences of singular ones), so for the answers that
//! have them, the encoded bytes are walked first and their items counted
//! against [`limits::MESSAGE_ITEMS`]. The walk allocates nothing; bytes
//! that are not valid protobuf are left for the decoder to refuse.

use super::limits::{self, Exceeded};

/// Where a message's repeated fields are: the field number, and the same
/// for the message each item is.
#[derive(Debug)]
pub struct Shape {
    /// The field's number.
    pub field: u32,
    /// The repeated fields of each item (empty for strings and bytes).
    pub inner: &'static [Shape],
}

/// `InfoResponse.capabilities`.
pub const INFO: &[Shape] = &[Shape { field: 5, inner: &[] }];
/// `ListSessionsResponse.sessions`, each with its `argv`.
pub const LIST_SESSIONS: &[Shape] = &[Shape { field: 1, inner: &[Shape { field: 3, inner: &[] }] }];
/// `WaitSessionResponse.session` and `SignalSessionResponse.session`, with `argv`.
pub const ONE_SESSION: &[Shape] = &[Shape { field: 1, inner: &[Shape { field: 3, inner: &[] }] }];
/// `PrepareResponse.heavy`.
pub const PREPARE: &[Shape] = &[Shape { field: 2, inner: &[] }];
/// `SyncResponse.manifest.entries`.
pub const SYNC: &[Shape] = &[Shape { field: 1, inner: &[Shape { field: 1, inner: &[] }] }];
/// `EgressListenResponse.listening`'s `configured` and `problems`.
pub const EGRESS_LISTEN: &[Shape] = &[Shape { field: 1, inner: &[Shape { field: 3, inner: &[] }, Shape { field: 4, inner: &[] }] }];

/// Counts the items of `shapes` in the encoded message `bytes`, failing as
/// soon as they exceed [`limits::MESSAGE_ITEMS`].
pub fn check(bytes: &[u8], shapes: &[Shape]) -> Result<(), Exceeded> {
    let mut count = 0;
    walk(bytes, shapes, &mut count)
}

fn walk(mut bytes: &[u8], shapes: &[Shape], count: &mut u64) -> Result<(), Exceeded> {
    while !bytes.is_empty() {
        let Some(tag) = varint(&mut bytes) else { return Ok(()) };
        let (field, wire_type) = (tag >> 3, tag & 7);
        match wire_type {
            0 => {
                if varint(&mut bytes).is_none() {
                    return Ok(());
                }
            }
            1 | 5 => {
                let skip = if wire_type == 1 { 8 } else { 4 };
                let Some(rest) = bytes.get(skip..) else { return Ok(()) };
                bytes = rest;
            }
            2 => {
                let Some(len) = varint(&mut bytes).and_then(|l| usize::try_from(l).ok()) else { return Ok(()) };
                let Some(item) = bytes.get(..len) else { return Ok(()) };
                bytes = &bytes[len..];
                if let Some(shape) = shapes.iter().find(|s| u64::from(s.field) == field) {
                    *count += 1;
                    limits::MESSAGE_ITEMS.check(*count)?;
                    walk(item, shape.inner, count)?;
                }
            }
            // Groups (not in proto3) and invalid wire types: the decoder refuses them.
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Reads one varint; `None` when the bytes end or it is longer than 10 bytes.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use hutch_proto::v1::{ListSessionsResponse, ManifestEntry, PathManifest, SessionInfo, SyncResponse, sync_response};
    use prost::Message;

    use super::*;

    #[test]
    fn real_answers_pass_and_floods_of_empty_items_do_not() {
        let session = SessionInfo { name: "build-1".into(), argv: vec!["make".into(), "-j8".into()], ..Default::default() };
        let list = ListSessionsResponse { sessions: vec![session; 256], ..Default::default() };
        assert!(check(&list.encode_to_vec(), LIST_SESSIONS).is_ok());

        let flood = ListSessionsResponse { sessions: vec![SessionInfo::default(); 70_000], ..Default::default() };
        let err = check(&flood.encode_to_vec(), LIST_SESSIONS).unwrap_err();
        assert_eq!(err.limit, limits::MESSAGE_ITEMS);
        let argv = SessionInfo { argv: vec![String::new(); 70_000], ..Default::default() };
        let nested = ListSessionsResponse { sessions: vec![argv], ..Default::default() };
        assert!(check(&nested.encode_to_vec(), LIST_SESSIONS).is_err(), "items inside items count too");

        let chunk =
            |n| SyncResponse { kind: Some(sync_response::Kind::Manifest(PathManifest { entries: vec![ManifestEntry::default(); n] })) };
        assert!(check(&chunk(4096).encode_to_vec(), SYNC).is_ok());
        assert!(check(&chunk(70_000).encode_to_vec(), SYNC).is_err());
        // Truncated or invalid bytes are the decoder's to refuse.
        assert!(check(&[0x0a, 0xff], LIST_SESSIONS).is_ok());
        assert!(check(&[0x0b], LIST_SESSIONS).is_ok());
    }
}
