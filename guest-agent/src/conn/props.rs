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

/// The connection as h2 reads it: client bytes arriving in `pieces` (sizes,
/// cycled), read into fresh uninitialized buffers of `reads` bytes (cycled),
/// as h2's codec offers its spare capacity; everything h2 got, or how it ended.
fn through_inbound(bytes: &[u8], pieces: &[usize], reads: &[usize]) -> Result<Vec<u8>, std::io::ErrorKind> {
    use std::mem::MaybeUninit;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use tokio::io::{AsyncRead, ReadBuf};

    struct Pieces<'a> {
        data: &'a [u8],
        sizes: &'a [usize],
        turn: usize,
    }
    impl AsyncRead for Pieces<'_> {
        fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            let size = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let n = size.min(self.data.len()).min(buf.remaining());
            let (now, later) = self.data.split_at(n);
            buf.put_slice(now);
            self.data = later;
            Poll::Ready(Ok(()))
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let _entered = runtime.enter();
    let slot = std::sync::Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().expect("slot");
    let mut inbound = super::inbound::Inbound::new(Pieces { data: bytes, sizes: pieces, turn: 0 }, slot);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    for turn in 0.. {
        let mut memory = vec![MaybeUninit::<u8>::uninit(); reads[turn % reads.len()].max(1)];
        let mut buf = ReadBuf::uninit(&mut memory);
        match Pin::new(&mut inbound).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Ok(out),
            Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
            Poll::Ready(Err(e)) => return Err(e.kind()),
            Poll::Pending => return Err(std::io::ErrorKind::WouldBlock),
        }
    }
    unreachable!("the loop only ends by returning")
}

/// A frame that is not part of a header block, up to `max` bytes of payload
/// (DATA frames as large as the ones hutch sends).
fn large_frame(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(vec![0u8, 0, 0, 3, 4, 6, 8]), any::<u8>(), any::<u32>(), 0..max, any::<u8>())
        .prop_map(|(kind, flags, stream, len, fill)| frame(kind, flags, stream, &vec![fill; len]))
}

/// Cases per property below: `PROPTEST_CASES` runs more (the long run the
/// zero-copy read was checked with: see the README's Benchmarks).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Payloads read straight into h2's (uninitialized) buffer arrive byte for
    /// byte, never past their frame, however the bytes arrive and however
    /// large h2's buffers are.
    #[test]
    fn direct_reads_keep_every_byte_in_place(
        frames in vec(large_frame(300_000), 0..8),
        pieces in vec(1..80_000usize, 1..5),
        reads in vec(1..1_200_000usize, 1..5),
    ) {
        let input = [PREFACE.to_vec(), frames.concat()].concat();
        prop_assert_eq!(through_inbound(&input, &pieces, &reads).expect("valid frames"), input);
    }

    /// Arbitrary client bytes end as the scanner alone says: the same bytes
    /// for h2, or an error, never a panic.
    #[test]
    fn hostile_bytes_end_as_the_scanner_says(
        bytes in vec(any::<u8>(), 0..3000),
        lengths in vec(0..200_000usize, 0..4),
        pieces in vec(1..5000usize, 1..5),
        reads in vec(1..70_000usize, 1..5),
    ) {
        // Hostile frames whose headers claim long payloads, then garbage.
        let mut input = PREFACE.to_vec();
        for len in lengths {
            input.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0, 0, 0, 0, 0, 1]);
            input.extend(std::iter::repeat_n(0x5a, len.min(1000)));
        }
        input.extend_from_slice(&bytes);
        let reference = run(&input, &[]);
        match (reference, through_inbound(&input, &pieces, &reads)) {
            (Ok(expected), Ok(got)) => prop_assert_eq!(got, expected),
            (Err(_), Err(kind)) => prop_assert_eq!(kind, std::io::ErrorKind::InvalidData),
            (expected, got) => prop_assert!(false, "scanner {:?}, connection {:?}", expected.map(|v| v.len()), got.map(|v| v.len())),
        }
    }
}

/// A reader that hands back a buffer of its own instead of filling the one
/// it was given is refused, not believed.
#[test]
fn a_reader_that_swaps_its_buffer_is_refused() {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use tokio::io::{AsyncRead, ReadBuf};

    struct Swapper {
        sent_preface: bool,
    }
    static OWN: std::sync::Mutex<[u8; 64]> = std::sync::Mutex::new([7; 64]);
    impl AsyncRead for Swapper {
        fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            if !self.sent_preface {
                self.sent_preface = true;
                buf.put_slice(&[&PREFACE[..], &frame(0, 0, 1, &[0; 64])[..9]].concat());
                return Poll::Ready(Ok(()));
            }
            let own: &'static mut [u8; 64] = Box::leak(Box::new(*OWN.lock().unwrap()));
            let mut swapped = ReadBuf::new(own);
            swapped.advance(64);
            *buf = swapped;
            Poll::Ready(Ok(()))
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let _entered = runtime.enter();
    let slot = std::sync::Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().expect("slot");
    let mut inbound = super::inbound::Inbound::new(Swapper { sent_preface: false }, slot);
    let mut cx = Context::from_waker(Waker::noop());
    let mut memory = vec![std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut seen = 0;
    loop {
        let mut buf = ReadBuf::uninit(&mut memory);
        match Pin::new(&mut inbound).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                assert!(!buf.filled().is_empty(), "ended without refusing the reader");
                seen += buf.filled().len();
                assert!(seen <= PREFACE.len() + 9, "a swapped buffer's bytes were taken as read");
            }
            Poll::Ready(Err(e)) => {
                assert!(e.to_string().contains("replaced the buffer"), "{e}");
                break;
            }
            Poll::Pending => panic!("pending"),
        }
    }
}
