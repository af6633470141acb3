//! The client's half of an HTTP/2 connection, scanned frame by frame before
//! h2 reads it.
//!
//! [`Frames`] is a plain state machine over bytes (no I/O), so it is tested
//! on its own, property tests included. It checks the client preface, notes
//! when the handshake is done (preface and the first frame header), passes
//! every frame through untouched except header blocks (HEADERS and their
//! CONTINUATIONs), which it collects and hands to [`Rewriter`], then emits
//! as one HEADERS frame and as many CONTINUATIONs as the 16 KiB minimum
//! frame size needs. Frames over [`limits::MAX_FRAME_BYTES`] and header
//! blocks over [`limits::MAX_HEADER_BLOCK_BYTES`] end the connection.

use super::headers::{HeaderError, Rewriter};
use crate::limits;

/// The client connection preface (RFC 9113, section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Frames every peer must accept (SETTINGS_MAX_FRAME_SIZE's minimum): the
/// size of the frames a rewritten block is cut into.
const SAFE_FRAME: usize = 16 * 1024;

/// A payload at least this long marks a bulk stream (see [`Frames::next_read`]).
const LARGE_PAYLOAD: usize = 16 * 1024;

/// Why the connection is ended.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The client did not start with the HTTP/2 preface.
    #[error("not an HTTP/2 client (no connection preface)")]
    NoPreface,
    /// A frame larger than the agent allows.
    #[error("a {0}-byte frame: frames are limited to {max} bytes", max = limits::MAX_FRAME_BYTES)]
    FrameTooLarge(usize),
    /// A header block over its limit.
    #[error("a header block over {} bytes", limits::MAX_HEADER_BLOCK_BYTES)]
    BlockTooLarge,
    /// HEADERS/CONTINUATION out of order, or a malformed HEADERS frame.
    #[error("a malformed or misplaced header frame")]
    Malformed,
    /// The header block itself.
    #[error(transparent)]
    Headers(#[from] HeaderError),
}

/// Where the scan is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// In the preface, after `matched` bytes of it.
    Preface(usize),
    /// At a frame header.
    Header,
    /// Inside a frame payload that passes through, `left` bytes to go.
    Payload(usize),
}

/// A header block being collected.
struct Block {
    stream: u32,
    end_stream: bool,
    fragment: Vec<u8>,
}

/// The scanner of one connection's client bytes.
pub struct Frames {
    scan: Scan,
    /// Client bytes not yet scanned (a partial frame header, a header frame
    /// not yet complete).
    held: Vec<u8>,
    /// Scanned bytes ready for h2, from `out[taken..]`.
    out: Vec<u8>,
    taken: usize,
    block: Option<Block>,
    rewriter: Rewriter,
    handshake_done: bool,
    /// The last frame passed through had a large payload: more are likely.
    after_large: bool,
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            scan: Scan::Preface(0),
            held: Vec::new(),
            out: Vec::new(),
            taken: 0,
            block: None,
            rewriter: Rewriter::default(),
            handshake_done: false,
            after_large: false,
        }
    }
}

impl Frames {
    /// Whether the client has sent the preface and a frame header.
    pub fn handshake_done(&self) -> bool {
        self.handshake_done
    }

    /// Bytes ready for h2.
    pub fn output(&self) -> &[u8] {
        &self.out[self.taken..]
    }

    /// Marks `n` bytes of [`Frames::output`] as taken.
    pub fn consume(&mut self, n: usize) {
        self.taken += n;
        if self.taken == self.out.len() {
            self.out.clear();
            self.taken = 0;
        }
    }

    /// How many client bytes may go straight to h2 without being copied
    /// through [`Frames::feed`]: the rest of a pass-through payload, when
    /// nothing is held or waiting.
    pub fn direct(&self) -> usize {
        match self.scan {
            Scan::Payload(left) if self.held.is_empty() && self.taken == self.out.len() => left,
            _ => 0,
        }
    }

    /// How many client bytes to read next through [`Frames::feed`], out of
    /// `chunk`: after a large payload, only the next frame's header, so that
    /// the next large payload goes straight to h2 whole (a bulk stream is
    /// DATA frame after DATA frame), and no part of it through two copies.
    pub fn next_read(&self, chunk: usize) -> usize {
        match self.scan {
            Scan::Header if self.after_large && self.held.len() < FRAME_HEADER => FRAME_HEADER - self.held.len(),
            _ => chunk,
        }
    }

    /// Notes that `n` (at most [`Frames::direct`]) bytes went straight through.
    pub fn passed_direct(&mut self, n: usize) {
        if let Scan::Payload(left) = self.scan {
            let left = left - n.min(left);
            self.scan = if left == 0 { Scan::Header } else { Scan::Payload(left) };
        }
    }

    /// Scans `input`, the client's next bytes, adding what is ready to
    /// [`Frames::output`].
    pub fn feed(&mut self, input: &[u8]) -> Result<(), FrameError> {
        self.held.extend_from_slice(input);
        let mut at = 0;
        let result = self.scan_held(&mut at);
        self.held.drain(..at);
        result
    }

    fn scan_held(&mut self, at: &mut usize) -> Result<(), FrameError> {
        loop {
            let rest = &self.held[*at..];
            match self.scan {
                Scan::Preface(matched) => {
                    let n = rest.len().min(PREFACE.len() - matched);
                    if n == 0 {
                        return Ok(());
                    }
                    if rest[..n] != PREFACE[matched..matched + n] {
                        return Err(FrameError::NoPreface);
                    }
                    self.out.extend_from_slice(&rest[..n]);
                    *at += n;
                    self.scan = if matched + n == PREFACE.len() { Scan::Header } else { Scan::Preface(matched + n) };
                }
                Scan::Payload(left) => {
                    let n = rest.len().min(left);
                    if n == 0 {
                        return Ok(());
                    }
                    self.out.extend_from_slice(&rest[..n]);
                    *at += n;
                    self.scan = if n == left { Scan::Header } else { Scan::Payload(left - n) };
                }
                Scan::Header => {
                    if rest.len() < FRAME_HEADER {
                        return Ok(());
                    }
                    let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
                    let (kind, flags) = (rest[3], rest[4]);
                    let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
                    if len > limits::MAX_FRAME_BYTES {
                        return Err(FrameError::FrameTooLarge(len));
                    }
                    self.handshake_done = true;
                    if kind == HEADERS || kind == CONTINUATION {
                        // A header frame is collected whole; its size is
                        // checked before waiting for it.
                        if len > limits::MAX_HEADER_BLOCK_BYTES + 256 + 5 {
                            return Err(FrameError::BlockTooLarge);
                        }
                        if rest.len() < FRAME_HEADER + len {
                            return Ok(());
                        }
                        let payload = rest[FRAME_HEADER..FRAME_HEADER + len].to_vec();
                        *at += FRAME_HEADER + len;
                        self.after_large = false;
                        self.header_frame(kind, flags, stream, &payload)?;
                    } else {
                        if self.block.is_some() {
                            // RFC 9113: nothing may come between HEADERS and
                            // the end of its CONTINUATIONs.
                            return Err(FrameError::Malformed);
                        }
                        self.out.extend_from_slice(&rest[..FRAME_HEADER]);
                        *at += FRAME_HEADER;
                        self.scan = if len == 0 { Scan::Header } else { Scan::Payload(len) };
                        self.after_large = len >= LARGE_PAYLOAD;
                    }
                }
            }
        }
    }

    fn header_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<(), FrameError> {
        let fragment = if kind == HEADERS {
            if self.block.is_some() {
                return Err(FrameError::Malformed);
            }
            let mut body = payload;
            let mut pad = 0;
            if flags & PADDED != 0 {
                let (&n, rest) = body.split_first().ok_or(FrameError::Malformed)?;
                pad = usize::from(n);
                body = rest;
            }
            if flags & PRIORITY != 0 {
                body = body.get(5..).ok_or(FrameError::Malformed)?;
            }
            let end = body.len().checked_sub(pad).ok_or(FrameError::Malformed)?;
            self.block = Some(Block { stream, end_stream: flags & END_STREAM != 0, fragment: Vec::new() });
            &body[..end]
        } else {
            match &self.block {
                Some(block) if block.stream == stream => payload,
                _ => return Err(FrameError::Malformed),
            }
        };
        let Some(block) = self.block.as_mut() else { return Err(FrameError::Malformed) };
        if block.fragment.len() + fragment.len() > limits::MAX_HEADER_BLOCK_BYTES {
            return Err(FrameError::BlockTooLarge);
        }
        block.fragment.extend_from_slice(fragment);
        if flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            let rewritten = self.rewriter.rewrite(&block.fragment)?;
            self.emit_block(block.stream, block.end_stream, &rewritten);
        }
        Ok(())
    }

    /// Writes `block` as HEADERS (+ CONTINUATION) frames of at most 16 KiB.
    fn emit_block(&mut self, stream: u32, end_stream: bool, block: &[u8]) {
        let mut pieces = block.chunks(SAFE_FRAME).peekable();
        let mut first = true;
        if block.is_empty() {
            self.frame(HEADERS, END_HEADERS | if end_stream { END_STREAM } else { 0 }, stream, &[]);
        }
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            let mut flags = if last { END_HEADERS } else { 0 };
            if first && end_stream {
                flags |= END_STREAM;
            }
            self.frame(if first { HEADERS } else { CONTINUATION }, flags, stream, piece);
            first = false;
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len();
        self.out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        self.out.extend_from_slice(&stream.to_be_bytes());
        self.out.extend_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Frames::default();
        f.frame(kind, flags, stream, payload);
        f.out
    }

    fn literal(name: &str, value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::headers::literal(&mut out, name.as_bytes(), value.as_bytes());
        out
    }

    /// Feeds `bytes` in pieces of `step` and collects the output.
    fn run(bytes: &[u8], step: usize) -> Result<Vec<u8>, FrameError> {
        let mut frames = Frames::default();
        let mut out = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            frames.feed(piece)?;
            out.extend_from_slice(frames.output());
            let n = frames.output().len();
            frames.consume(n);
        }
        Ok(out)
    }

    #[test]
    fn everything_but_header_blocks_passes_through_unchanged_in_any_pieces() {
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let data = frame(0x0, 0x1, 1, &vec![7u8; 40_000]);
        let ping = frame(0x6, 0, 0, &[1; 8]);
        let input = [&PREFACE[..], &settings, &data, &ping].concat();
        for step in [1, 5, 9, 24, 100, 70_000] {
            assert_eq!(run(&input, step).unwrap(), input, "pieces of {step}");
        }
    }

    #[test]
    fn header_blocks_lose_a_bad_authority_and_keep_their_flags() {
        let block = [literal(":method", "POST"), literal(":authority", "/tmp/a.sock"), literal(":path", "/x")].concat();
        let (first, rest) = block.split_at(10);
        let headers = frame(HEADERS, PADDED | PRIORITY | END_STREAM, 3, &[&[2u8][..], &[0, 0, 0, 0, 9], first, &[0, 0]].concat());
        let continuation = frame(CONTINUATION, END_HEADERS, 3, rest);
        let input = [&PREFACE[..], &frame(0x4, 0, 0, &[]), &headers, &continuation].concat();
        for step in [1, 13, 1000] {
            let out = run(&input, step).unwrap();
            let expected_block = [literal(":method", "POST"), literal(":path", "/x")].concat();
            let expected = [&PREFACE[..], &frame(0x4, 0, 0, &[]), &frame(HEADERS, END_STREAM | END_HEADERS, 3, &expected_block)].concat();
            assert_eq!(out, expected, "pieces of {step}");
        }
    }

    #[test]
    fn the_handshake_is_done_after_the_preface_and_a_frame_header() {
        let mut frames = Frames::default();
        frames.feed(&PREFACE[..20]).unwrap();
        assert!(!frames.handshake_done());
        frames.feed(&PREFACE[20..]).unwrap();
        assert!(!frames.handshake_done());
        frames.feed(&frame(0x4, 0, 0, &[])).unwrap();
        assert!(frames.handshake_done());
    }

    #[test]
    fn after_a_large_payload_only_the_next_header_is_read_through_the_scanner() {
        let mut frames = Frames::default();
        frames.feed(&[&PREFACE[..], &frame(0x4, 0, 0, &[])].concat()).unwrap();
        assert_eq!(frames.next_read(65_536), 65_536, "small frames: read as much as comes");
        frames.feed(&frame(0x0, 0, 1, &[])[..FRAME_HEADER - 2]).unwrap();
        frames.feed(&[0, 0]).unwrap();
        frames.feed(&[(LARGE_PAYLOAD >> 16) as u8, (LARGE_PAYLOAD >> 8) as u8, LARGE_PAYLOAD as u8, 0, 0, 0, 0, 0, 1]).unwrap();
        frames.consume(frames.output().len());
        assert_eq!(frames.direct(), LARGE_PAYLOAD);
        frames.passed_direct(LARGE_PAYLOAD);
        assert_eq!(frames.next_read(65_536), FRAME_HEADER, "after a large DATA frame: its successor's header only");
        frames.feed(&[0, 0, 4]).unwrap();
        assert_eq!(frames.next_read(65_536), FRAME_HEADER - 3);
        frames.feed(&[0x8, 0, 0, 0, 0, 1, 0, 0, 0, 9][..6]).unwrap();
        assert_eq!(frames.next_read(65_536), 65_536, "a small frame ends the streak");
    }

    #[test]
    fn bad_streams_are_refused() {
        assert_eq!(run(b"GET / HTTP/1.1\r\n\r\n", 4), Err(FrameError::NoPreface));
        let huge = [&PREFACE[..], &[0x10, 0, 1, 0, 0, 0, 0, 0, 1]].concat();
        assert_eq!(run(&huge, 100), Err(FrameError::FrameTooLarge(0x10_0001)));
        let big_headers = [&PREFACE[..], &[0x02, 0, 0, HEADERS, 0, 0, 0, 0, 1]].concat();
        assert_eq!(run(&big_headers, 100), Err(FrameError::BlockTooLarge));
        let stray = [&PREFACE[..], &frame(CONTINUATION, END_HEADERS, 1, &[])].concat();
        assert_eq!(run(&stray, 100), Err(FrameError::Malformed));
        let interleaved = [&PREFACE[..], &frame(HEADERS, 0, 1, &[]), &frame(0x0, 0, 1, &[])].concat();
        assert_eq!(run(&interleaved, 100), Err(FrameError::Malformed));
        let bad_pad = [&PREFACE[..], &frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 1])].concat();
        assert_eq!(run(&bad_pad, 100), Err(FrameError::Malformed));
    }

    #[test]
    fn large_blocks_are_cut_into_frames_every_peer_accepts() {
        let block: Vec<u8> = (0..40).flat_map(|i| literal(&format!("x-{i:02}"), &"v".repeat(120))).collect();
        let input = [
            &PREFACE[..],
            &frame(0x4, 0, 0, &[]),
            &frame(HEADERS, 0, 1, &block[..3000]),
            &frame(CONTINUATION, END_HEADERS, 1, &block[3000..]),
        ]
        .concat();
        let out = run(&input, 4096).unwrap();
        assert_eq!(&out[..PREFACE.len() + 9], &input[..PREFACE.len() + 9]);
        let mut rest = &out[PREFACE.len() + 9..];
        let mut reassembled = Vec::new();
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            assert!(len <= SAFE_FRAME);
            reassembled.extend_from_slice(&rest[9..9 + len]);
            rest = &rest[9 + len..];
        }
        assert_eq!(reassembled, block);
    }
}
