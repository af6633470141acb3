//! Property tests of the connection filter: arbitrary client bytes never
//! panic it, frames other than header blocks pass through byte for byte
//! however the bytes are cut, and header blocks come out as blocks any
//! HPACK decoder reads, with the same fields less an invalid `:authority`.
//! A fixed number of cases each; `PROPTEST_CASES=N` runs more.

use loona_hpack::Decoder;
use proptest::collection::vec;
use proptest::prelude::*;

use super::frames::{Frames, PREFACE};

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Feeds `bytes` cut at `cuts` and collects the output, or the error.
fn run(bytes: &[u8], cuts: &[usize]) -> Result<Vec<u8>, super::frames::FrameError> {
    let mut frames = Frames::default();
    let mut out = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    for point in points {
        if point > at {
            frames.feed(&bytes[at..point])?;
            at = point;
        }
        let n = frames.output().len();
        out.extend_from_slice(frames.output());
        frames.consume(n);
    }
    Ok(out)
}

/// A frame that is not part of a header block.
fn plain_frame() -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(vec![0u8, 2, 3, 4, 6, 7, 8, 0x42]), any::<u8>(), any::<u32>(), vec(any::<u8>(), 0..300))
        .prop_map(|(kind, flags, stream, payload)| frame(kind, flags, stream, &payload))
}

fn field() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        prop_oneof![Just(b":authority".to_vec()), Just(b":path".to_vec()), "[a-z-]{1,12}".prop_map(String::into_bytes)],
        prop_oneof![
            Just(b"/tmp/agent.sock".to_vec()),
            Just(b"%2Ftmp%2Fa.sock".to_vec()),
            Just(b"localhost:50051".to_vec()),
            vec(any::<u8>(), 0..40)
        ],
    )
}

fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    super::headers::literal(&mut out, name, value);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes after the preface: an error or output, never a panic.
    #[test]
    fn arbitrary_client_bytes_never_panic(bytes in vec(any::<u8>(), 0..2000), cuts in vec(any::<usize>(), 0..8)) {
        let _ = run(&[&PREFACE[..], &bytes].concat(), &cuts);
        let _ = run(&bytes, &cuts);
    }

    /// Frames that are not header blocks pass through unchanged.
    #[test]
    fn other_frames_pass_through_unchanged(frames in vec(plain_frame(), 0..20), cuts in vec(any::<usize>(), 0..12)) {
        let input = [PREFACE.to_vec(), frames.concat()].concat();
        prop_assert_eq!(run(&input, &cuts).expect("valid frames"), input);
    }

    /// A header block, however it is split into HEADERS and CONTINUATION
    /// frames, padded or prioritised, comes out with the same fields less
    /// an invalid `:authority`, readable by a fresh HPACK decoder.
    #[test]
    fn header_blocks_keep_their_fields(
        fields in vec(field(), 1..10),
        split in any::<usize>(),
        pad in prop::option::of(0u8..20),
        priority in any::<bool>(),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let block: Vec<u8> = fields.iter().flat_map(|(n, v)| literal(n, v)).collect();
        let split = split % (block.len() + 1);
        let mut payload = Vec::new();
        let mut flags = 0x1; // END_STREAM
        if let Some(pad) = pad {
            payload.push(pad);
            flags |= 0x8;
        }
        if priority {
            payload.extend_from_slice(&[0, 0, 0, 0, 16]);
            flags |= 0x20;
        }
        payload.extend_from_slice(&block[..split]);
        payload.extend(std::iter::repeat_n(0, usize::from(pad.unwrap_or(0))));
        let input = [&PREFACE[..], &frame(0x1, flags, 1, &payload), &frame(0x9, 0x4, 1, &block[split..])].concat();
        let out = run(&input, &cuts).expect("a valid header block");
        prop_assert_eq!(&out[..PREFACE.len()], &PREFACE[..]);
        let mut rest = &out[PREFACE.len()..];
        let mut rewritten = Vec::new();
        let mut first = true;
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            prop_assert_eq!(rest[3], if first { 0x1 } else { 0x9 });
            prop_assert_eq!(rest[4] & 0x1 != 0, first, "END_STREAM belongs on the HEADERS frame only");
            first = false;
            rewritten.extend_from_slice(&rest[9..9 + len]);
            rest = &rest[9 + len..];
        }
        let decoded = Decoder::new().decode(&rewritten).expect("a decodable block");
        let expected: Vec<(Vec<u8>, Vec<u8>)> = fields
            .into_iter()
            .filter(|(n, v)| n != b":authority" || http::uri::Authority::try_from(v.as_slice()).is_ok())
            .collect();
        prop_assert_eq!(decoded, expected);
    }
}
