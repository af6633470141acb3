//! A session's output buffer: the newest bytes of stdout and stderr, in the
//! order they were read, within a fixed capacity.
//!
//! Output is numbered by its offset in the session's whole output (both
//! streams together), so every reader keeps a [`Cursor`] and reads at its own
//! pace; nothing is kept per reader. When a write needs room the oldest bytes
//! go, and per-stream counters say how many went: a reader whose cursor fell
//! behind learns how many bytes of each stream it missed, then goes on from
//! the oldest byte still held.
//!
//! The bytes live in one circular array, allocated at the first write (a
//! session that prints nothing costs nothing) and filled by `read(2)`
//! directly, so output nobody reads is copied once, from the kernel. Which
//! stream each stretch came from is a list of switch points, bounded in
//! number (see [`max_marks`]); a writer that alternates between stdout and
//! stderr in very small pieces makes the oldest stretches go sooner.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;

use super::output::Channel;

/// The oldest byte of a stretch of one stream.
#[derive(Clone, Copy, Debug)]
struct Mark {
    offset: u64,
    channel: Channel,
}

/// Where a reader is, and how much of each stream lies before that point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Offset of the next byte to read.
    pub offset: u64,
    /// Bytes of stdout and of stderr before `offset` (read or dropped).
    pub before: [u64; 2],
}

/// What one read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The next bytes, all from one stream.
    Data(Channel, Bytes),
    /// The cursor was behind the oldest byte held: this many bytes of stdout
    /// and of stderr are gone; the cursor now points at the oldest byte.
    Dropped([u64; 2]),
    /// Nothing new.
    Empty,
}

/// A bounded buffer of one session's output.
pub struct Ring {
    buf: Vec<u8>,
    capacity: usize,
    start: u64,
    end: u64,
    marks: VecDeque<Mark>,
    dropped: [u64; 2],
}

/// How many stream switches a buffer of `capacity` bytes records: one per
/// 512 bytes on average, at least 64 (16 bytes each: 1/32 of the capacity).
pub fn max_marks(capacity: usize) -> usize {
    (capacity / 512).max(64)
}

impl Ring {
    /// An empty buffer for `capacity` bytes (at least 1); nothing is allocated yet.
    pub fn new(capacity: usize) -> Ring {
        Ring { buf: Vec::new(), capacity: capacity.max(1), start: 0, end: 0, marks: VecDeque::new(), dropped: [0; 2] }
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Offset just past the newest byte: all output ever written.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.end - self.start
    }

    /// Bytes of stdout and stderr let go so far.
    pub fn dropped(&self) -> [u64; 2] {
        self.dropped
    }

    /// A cursor at the oldest byte held.
    pub fn oldest(&self) -> Cursor {
        Cursor { offset: self.start, before: self.dropped }
    }

    /// How many bytes may be written now without dropping any byte at or
    /// after `keep` (a reader that must see everything); any amount up to the
    /// capacity when there is no such reader.
    pub fn room(&self, keep: Option<u64>) -> usize {
        match keep {
            Some(keep) => {
                let unread = self.end.saturating_sub(keep.max(self.start));
                let behind = keep < self.start;
                if behind { 0 } else { self.capacity.saturating_sub(usize::try_from(unread).unwrap_or(usize::MAX)) }
            }
            None => self.capacity,
        }
    }

    /// Appends up to `max` bytes of `channel` that `read` puts into the slice
    /// it is given (a `read(2)` of a pipe, typically), dropping as many of the
    /// oldest bytes as it wrote beyond the capacity. Returns what `read`
    /// returned: 0 is end of file.
    pub fn write_with(&mut self, channel: Channel, max: usize, read: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<usize> {
        if self.buf.is_empty() {
            // Zeroed memory from a fresh mapping: pages become resident only
            // as output fills them.
            self.buf = vec![0; self.capacity];
        }
        let at = self.physical(self.end);
        let len = max.min(self.capacity - at);
        if len == 0 {
            return Ok(0);
        }
        let n = read(&mut self.buf[at..at + len])?.min(len);
        if n > 0 {
            self.commit(channel, n);
        }
        Ok(n)
    }

    /// Appends `data` of `channel` (all of it, keeping only the newest
    /// `capacity` bytes).
    #[cfg(test)]
    pub fn push(&mut self, channel: Channel, mut data: &[u8]) {
        if data.len() > self.capacity {
            // Only the tail can stay; the rest is dropped as if written first.
            let skip = data.len() - self.capacity;
            self.count_skipped(channel, skip as u64);
            data = &data[skip..];
        }
        while !data.is_empty() {
            let wrote = self.write_with(channel, data.len(), |slot| {
                slot.copy_from_slice(&data[..slot.len()]);
                Ok(slot.len())
            });
            let n = wrote.unwrap_or(0);
            data = &data[n..];
        }
    }

    /// Reads the next bytes at `cursor`, at most `max` of them, and moves it on.
    pub fn read(&self, cursor: &mut Cursor, max: usize) -> Read {
        if cursor.offset < self.start {
            let lost = [self.dropped[0].saturating_sub(cursor.before[0]), self.dropped[1].saturating_sub(cursor.before[1])];
            *cursor = self.oldest();
            return Read::Dropped(lost);
        }
        if cursor.offset >= self.end || max == 0 {
            return Read::Empty;
        }
        let index = self.marks.partition_point(|m| m.offset <= cursor.offset).saturating_sub(1);
        let Some(mark) = self.marks.get(index) else { return Read::Empty };
        let stretch_end = self.marks.get(index + 1).map_or(self.end, |next| next.offset);
        let at = self.physical(cursor.offset);
        let available = usize::try_from(stretch_end - cursor.offset).unwrap_or(usize::MAX);
        let n = available.min(max).min(self.capacity - at);
        let data = Bytes::copy_from_slice(&self.buf[at..at + n]);
        cursor.offset += n as u64;
        cursor.before[index_of(mark.channel)] += n as u64;
        Read::Data(mark.channel, data)
    }

    fn physical(&self, offset: u64) -> usize {
        // The remainder is below the capacity, a usize.
        (offset % self.capacity as u64) as usize
    }

    /// Records `n` new bytes of `channel` at the end; drops what they overwrote.
    fn commit(&mut self, channel: Channel, n: usize) {
        let same = self.marks.back().is_some_and(|m| index_of(m.channel) == index_of(channel));
        if !same {
            if self.marks.len() >= max_marks(self.capacity) {
                // Too many switches: the oldest stretch goes whole.
                let next = self.marks.get(1).map_or(self.end, |m| m.offset);
                self.drop_until(next);
            }
            if self.marks.capacity() == self.marks.len() {
                // Grow once to the bound, not by doubling past it.
                let bound = max_marks(self.capacity);
                self.marks.reserve_exact((self.marks.len() * 2).clamp(4, bound) - self.marks.len());
            }
            self.marks.push_back(Mark { offset: self.end, channel });
        }
        self.end += n as u64;
        let overflow = self.end - self.start;
        if overflow > self.capacity as u64 {
            self.drop_until(self.end - self.capacity as u64);
        }
    }

    /// Lets go of every byte before `offset`, counting them per stream.
    fn drop_until(&mut self, offset: u64) {
        let offset = offset.min(self.end);
        while self.start < offset {
            let Some(first) = self.marks.front().copied() else {
                self.start = offset;
                break;
            };
            let stretch_end = self.marks.get(1).map_or(self.end, |m| m.offset);
            let upto = stretch_end.min(offset);
            self.dropped[index_of(first.channel)] += upto - self.start;
            self.start = upto;
            if upto == stretch_end && self.marks.len() > 1 {
                self.marks.pop_front();
            }
        }
        if self.start == self.end {
            // Keep the last mark only if it still describes the next byte.
            while self.marks.len() > 1 {
                self.marks.pop_front();
            }
        }
    }

    /// Counts `n` bytes of `channel` that were never stored (dropped on arrival).
    #[cfg(test)]
    fn count_skipped(&mut self, channel: Channel, n: u64) {
        // Pretend they were written and dropped: everything held goes first.
        self.drop_until(self.end);
        self.dropped[index_of(channel)] += n;
        self.start += n;
        self.end += n;
        self.marks.clear();
    }
}

/// 0 for stdout, 1 for stderr.
fn index_of(channel: Channel) -> usize {
    match channel {
        Channel::Stdout => 0,
        Channel::Stderr => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: Channel = Channel::Stdout;
    const ERR: Channel = Channel::Stderr;

    /// Everything readable from `cursor`, as (stream index, bytes) runs, and drops.
    fn drain(ring: &Ring, cursor: &mut Cursor) -> (Vec<(usize, Vec<u8>)>, [u64; 2]) {
        let mut runs: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut lost = [0; 2];
        loop {
            match ring.read(cursor, 7) {
                Read::Data(ch, data) => match runs.last_mut() {
                    Some((last, bytes)) if *last == index_of(ch) => bytes.extend_from_slice(&data),
                    _ => runs.push((index_of(ch), data.to_vec())),
                },
                Read::Dropped(d) => {
                    lost[0] += d[0];
                    lost[1] += d[1];
                }
                Read::Empty => return (runs, lost),
            }
        }
    }

    #[test]
    fn keeps_everything_below_capacity_in_order() {
        let mut ring = Ring::new(64);
        ring.push(OUT, b"one ");
        ring.push(ERR, b"two ");
        ring.push(OUT, b"three");
        let (runs, lost) = drain(&ring, &mut Cursor::default());
        assert_eq!(runs, vec![(0, b"one ".to_vec()), (1, b"two ".to_vec()), (0, b"three".to_vec())]);
        assert_eq!(lost, [0, 0]);
        assert_eq!(ring.held(), 13);
    }

    #[test]
    fn keeps_the_tail_and_counts_what_went_per_stream() {
        let mut ring = Ring::new(10);
        ring.push(OUT, b"aaaaaa"); // 6 out
        ring.push(ERR, b"bbbb"); // 4 err: full
        ring.push(OUT, b"cccccc"); // 6 more out: drops 6 (all of the a's)
        assert_eq!(ring.dropped(), [6, 0]);
        ring.push(OUT, b"dd"); // drops 2 b's
        assert_eq!(ring.dropped(), [6, 2]);
        let mut cursor = Cursor::default();
        let (runs, lost) = drain(&ring, &mut cursor);
        assert_eq!(lost, [6, 2]);
        assert_eq!(runs, vec![(1, b"bb".to_vec()), (0, b"ccccccdd".to_vec())]);
        assert_eq!(cursor.offset, ring.end());
        assert_eq!(cursor.before, [14, 4]);
    }

    #[test]
    fn a_reader_that_falls_behind_learns_exactly_what_it_missed() {
        let mut ring = Ring::new(8);
        let mut cursor = Cursor::default();
        ring.push(OUT, b"12345");
        assert_eq!(ring.read(&mut cursor, 3), Read::Data(OUT, Bytes::from_static(b"123")));
        ring.push(ERR, b"EEEE");
        ring.push(OUT, b"6789");
        // Held now: "5" is gone? 13 bytes written, 8 held: offsets 5..13.
        assert_eq!(ring.oldest().offset, 5);
        // The reader was at 3: it missed "45" of stdout.
        assert_eq!(ring.read(&mut cursor, 100), Read::Dropped([2, 0]));
        let (runs, lost) = drain(&ring, &mut cursor);
        assert_eq!(lost, [0, 0]);
        assert_eq!(runs, vec![(1, b"EEEE".to_vec()), (0, b"6789".to_vec())]);
    }

    #[test]
    fn wraps_around_many_times() {
        let mut ring = Ring::new(1000);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(333) {
            ring.push(OUT, piece);
        }
        let (runs, lost) = drain(&ring, &mut Cursor::default());
        assert_eq!(lost, [9000, 0]);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].1, data[9000..]);
    }

    #[test]
    fn a_write_larger_than_the_buffer_keeps_its_tail() {
        let mut ring = Ring::new(4);
        ring.push(ERR, b"xy");
        ring.push(OUT, b"0123456789");
        let (runs, lost) = drain(&ring, &mut Cursor::default());
        assert_eq!(runs, vec![(0, b"6789".to_vec())]);
        assert_eq!(lost, [6, 2]);
    }

    #[test]
    fn room_protects_a_reader_that_must_see_everything() {
        let mut ring = Ring::new(10);
        ring.push(OUT, b"abcdef");
        assert_eq!(ring.room(Some(0)), 4);
        assert_eq!(ring.room(Some(6)), 10);
        assert_eq!(ring.room(None), 10);
        ring.push(OUT, b"ghijkl"); // drops "ab"
        assert_eq!(ring.room(Some(0)), 0, "a reader behind the oldest byte leaves no room");
    }

    #[test]
    fn switches_are_bounded_and_the_oldest_stretches_go_first() {
        let capacity = 64 * 1024;
        let mut ring = Ring::new(capacity);
        for i in 0..(max_marks(capacity) * 3) {
            ring.push(if i % 2 == 0 { OUT } else { ERR }, b"x");
        }
        assert!(ring.marks.len() <= max_marks(capacity));
        assert!(ring.marks.capacity() <= max_marks(capacity) + 4, "{}", ring.marks.capacity());
        let (runs, lost) = drain(&ring, &mut Cursor::default());
        let kept: usize = runs.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(kept as u64 + lost[0] + lost[1], (max_marks(capacity) * 3) as u64);
        assert_eq!(runs.len(), kept, "every kept byte keeps its own stream");
    }

    #[test]
    fn nothing_is_allocated_before_the_first_byte() {
        let ring = Ring::new(4 << 20);
        assert_eq!(ring.buf.capacity(), 0);
        assert_eq!(ring.read(&mut Cursor::default(), 10), Read::Empty);
    }
}
