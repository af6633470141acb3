//! Keeping a bounded part of a stream of bytes from the guest: what a tool
//! returns is at most a cap, whatever the guest sends.
//!
//! A command's output keeps its start and its end (a build's errors are at
//! the end, what it was doing at the start), with the count of what was cut
//! between them; output a tool parses (listings, search results) keeps its
//! start only. Memory is the cap, never the size of the stream.

use std::collections::VecDeque;

/// Which part of an over-long stream to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The first half of the cap and the last half.
    HeadAndTail,
    /// The first `cap` bytes.
    Head,
    /// The last `cap` bytes.
    Tail,
}

/// At most `cap` bytes of a stream, and how long the stream was.
#[derive(Debug)]
pub struct Capture {
    cap: usize,
    keep: Keep,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

/// What a [`Capture`] kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// The bytes kept before the cut (all of them when nothing was cut).
    pub head: Vec<u8>,
    /// The bytes kept after the cut ([`Keep::HeadAndTail`], [`Keep::Tail`]).
    pub tail: Vec<u8>,
    /// How many bytes the stream had.
    pub total: u64,
}

impl Captured {
    /// Bytes that were not kept.
    pub fn cut(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }
}

impl Capture {
    /// Keeps at most `cap` bytes, as `keep` says.
    pub fn new(cap: usize, keep: Keep) -> Capture {
        Capture { cap, keep, head: Vec::new(), tail: VecDeque::new(), total: 0 }
    }

    fn head_cap(&self) -> usize {
        match self.keep {
            Keep::Head => self.cap,
            Keep::HeadAndTail => self.cap / 2,
            Keep::Tail => 0,
        }
    }

    /// Takes the next bytes of the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.head_cap().saturating_sub(self.head.len());
        let now = room.min(data.len());
        self.head.extend_from_slice(&data[..now]);
        data = &data[now..];
        if self.keep == Keep::Head || data.is_empty() {
            return;
        }
        let tail_cap = self.cap - self.head_cap();
        if data.len() >= tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(data);
    }

    /// Whether the stream has gone past the cap (for a head-only capture:
    /// nothing more will be kept).
    pub fn full(&self) -> bool {
        self.total >= self.cap as u64
    }

    /// Bytes of the stream so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// What was kept.
    pub fn finish(self) -> Captured {
        Captured { head: self.head, tail: self.tail.into(), total: self.total }
    }
}

/// Bytes from the guest as text for a model: UTF-8 where they are, U+FFFD
/// where they are not (a character cut in two by the cap included), and
/// whether anything had to be replaced.
pub fn text(bytes: &[u8]) -> (String, bool) {
    match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(text) => (text.to_owned(), false),
        std::borrow::Cow::Owned(text) => (text, true),
    }
}

/// A capture as one text: the head, a line saying how much was cut, the
/// tail. Returns the text and whether bytes that are not UTF-8 were replaced.
pub fn joined(captured: &Captured) -> (String, bool) {
    if captured.cut() == 0 {
        return text(&[captured.head.as_slice(), captured.tail.as_slice()].concat());
    }
    let (head, head_lossy) = text(&captured.head);
    let (tail, tail_lossy) = text(&captured.tail);
    let marker = format!("[… {} bytes cut here by hutch …]", captured.cut());
    let out = match (head.is_empty(), tail.is_empty()) {
        (true, _) => format!("{marker}\n{tail}"),
        (false, true) => format!("{head}\n{marker}"),
        (false, false) => format!("{head}\n{marker}\n{tail}"),
    };
    (out, head_lossy || tail_lossy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_tail_keep_both_ends_within_the_cap_whatever_the_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in [1, 7, 100, 4096, 10_000] {
            let mut capture = Capture::new(1000, Keep::HeadAndTail);
            for piece in data.chunks(chunk) {
                capture.push(piece);
            }
            let kept = capture.finish();
            assert_eq!(kept.head, data[..500], "chunk {chunk}");
            assert_eq!(kept.tail, data[data.len() - 500..], "chunk {chunk}");
            assert_eq!(kept.total, 10_000);
            assert_eq!(kept.cut(), 9_000);
        }
    }

    #[test]
    fn a_short_stream_is_kept_whole_and_a_head_capture_stops_at_its_cap() {
        let mut capture = Capture::new(1000, Keep::HeadAndTail);
        capture.push(b"hello ");
        capture.push(b"world");
        let kept = capture.finish();
        assert_eq!((kept.head.as_slice(), kept.tail.len(), kept.cut()), (&b"hello world"[..], 0, 0));
        assert_eq!(joined(&kept), ("hello world".to_owned(), false));

        let mut capture = Capture::new(4, Keep::Tail);
        capture.push(b"abcdef");
        capture.push(b"gh");
        let kept = capture.finish();
        assert_eq!((kept.head.len(), kept.tail.as_slice(), kept.cut()), (0, &b"efgh"[..], 4));

        let mut capture = Capture::new(4, Keep::Head);
        capture.push(b"abcdef");
        assert!(capture.full());
        capture.push(b"gh");
        let kept = capture.finish();
        assert_eq!((kept.head.as_slice(), kept.total, kept.cut()), (&b"abcd"[..], 8, 4));
    }

    #[test]
    fn text_that_is_not_utf8_is_replaced_and_said_so() {
        let mut capture = Capture::new(6, Keep::HeadAndTail);
        // "é" is two bytes; the cut falls inside the second one.
        capture.push("aaé".as_bytes());
        capture.push(b"zzzzzzz\xff");
        let (text, lossy) = joined(&capture.finish());
        assert!(lossy);
        assert!(text.starts_with("aa\u{fffd}\n[… 6 bytes cut here by hutch …]\nzz\u{fffd}"), "{text:?}");
    }
}
