//! Reading the tar stream of a Sync with every size bounded before it is
//! trusted.
//!
//! A general tar reader reads a GNU long name or a PAX header whole, however
//! large its header says it is (1 GiB from 33 KB of zstd), and stops
//! decompressing at the end-of-archive marker, so the zstd frame's checksum
//! is never checked. This reader accepts what hutch's host writes (GNU and
//! ustar headers, GNU long names and links, PAX `path`, `linkpath`, `mtime`
//! and `size`), refuses a long name over [`limits::MAX_PATH_BYTES`] or a PAX
//! header over [`limits::MAX_PAX_BYTES`] from its header alone, and reads the
//! stream to its very end: the end marker, then only zeros (at most
//! [`limits::MAX_ARCHIVE_TRAILER`]), then the zstd epilogue with its
//! checksum.

use std::io::{self, Read};

use crate::limits;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file; its data follows.
    File,
    /// A folder.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A hard link (refused by the receiver).
    HardLink,
    /// A character or block device (refused).
    Device,
    /// A named pipe (refused).
    Fifo,
    /// Any other type byte (refused).
    Other(u8),
}

/// One entry's header, with GNU and PAX extensions already applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The path as sent (at most [`limits::MAX_PATH_BYTES`]).
    pub path: Vec<u8>,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Bytes of data that follow (files only; 0 for the rest).
    pub size: u64,
    /// The link target (symlinks and hard links).
    pub link: Vec<u8>,
}

/// Why the stream is not an archive the agent accepts.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The compressed stream, or the tar data in it, could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A header's checksum does not match its bytes.
    #[error("a tar header's checksum does not match")]
    Checksum,
    /// A numeric field holds no number.
    #[error("a tar header's {0} field is not a number")]
    Number(&'static str),
    /// A long name or link target over the path limit.
    #[error("a {what} of {len} bytes: paths are limited to {max} bytes", max = limits::MAX_PATH_BYTES)]
    PathTooLong {
        /// Which field.
        what: &'static str,
        /// Its claimed length.
        len: u64,
    },
    /// A PAX header over its limit.
    #[error("a PAX header of {0} bytes: PAX headers are limited to {max} bytes", max = limits::MAX_PAX_BYTES)]
    PaxTooLarge(u64),
    /// A PAX record that does not parse.
    #[error("a malformed PAX record")]
    Pax,
    /// GNU or PAX records with no entry after them.
    #[error("extension headers at the end of the archive describe no entry")]
    Dangling,
    /// Something other than zeros after the end-of-archive marker.
    #[error("data after the end of the archive")]
    Trailing,
}

/// Extensions announced for the next entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    mtime_ns: Option<i64>,
    size: Option<u64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.path.is_none() && self.link.is_none() && self.mtime_ns.is_none() && self.size.is_none()
    }
}

/// A tar stream read entry by entry.
pub struct Reader<R: Read> {
    inner: R,
    /// Unread data bytes of the current entry, and its padding after them.
    left: u64,
    padding: u64,
    ended: bool,
}

const BLOCK: usize = 512;

impl<R: Read> Reader<R> {
    /// Reads the tar stream `inner` (already decompressed).
    pub fn new(inner: R) -> Self {
        Reader { inner, left: 0, padding: 0, ended: false }
    }

    /// The next entry's header, or `None` at the end of the archive (after
    /// reading the rest of the stream; see the module doc). The previous
    /// entry's unread data is skipped first.
    pub fn next_header(&mut self) -> Result<Option<Header>, ArchiveError> {
        if self.ended {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pending = Pending::default();
        loop {
            let mut block = [0u8; BLOCK];
            if !read_block(&mut self.inner, &mut block)? || block.iter().all(|b| *b == 0) {
                if !pending.is_empty() {
                    return Err(ArchiveError::Dangling);
                }
                self.ended = true;
                self.drain_trailer()?;
                return Ok(None);
            }
            verify_checksum(&block)?;
            let size = number(&block[124..136], "size")?;
            let type_byte = block[156];
            match type_byte {
                b'L' | b'K' => {
                    let what = if type_byte == b'L' { "GNU long name" } else { "GNU long link" };
                    if size > limits::MAX_PATH_BYTES as u64 + 1 {
                        return Err(ArchiveError::PathTooLong { what, len: size });
                    }
                    let mut name = self.read_padded(size)?;
                    while name.last() == Some(&0) {
                        name.pop();
                    }
                    if type_byte == b'L' {
                        pending.path = Some(name);
                    } else {
                        pending.link = Some(name);
                    }
                }
                b'x' | b'g' => {
                    if size > limits::MAX_PAX_BYTES as u64 {
                        return Err(ArchiveError::PaxTooLarge(size));
                    }
                    let records = self.read_padded(size)?;
                    // Global headers set defaults hutch never relies on.
                    if type_byte == b'x' {
                        pax(&records, &mut pending)?;
                    }
                }
                _ => return self.entry(&block, size, pending).map(Some),
            }
        }
    }

    /// The current entry's data (files): at most its size, then EOF.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { reader: self }
    }

    fn entry(&mut self, block: &[u8; BLOCK], header_size: u64, pending: Pending) -> Result<Header, ArchiveError> {
        let kind = match block[156] {
            b'0' | 0 | b'7' => Kind::File,
            b'5' => Kind::Directory,
            b'2' => Kind::Symlink,
            b'1' => Kind::HardLink,
            b'3' | b'4' => Kind::Device,
            b'6' => Kind::Fifo,
            other => Kind::Other(other),
        };
        let path = match pending.path {
            Some(path) => path,
            None => ustar_path(block),
        };
        if path.len() > limits::MAX_PATH_BYTES {
            return Err(ArchiveError::PathTooLong { what: "path", len: path.len() as u64 });
        }
        let link = pending.link.unwrap_or_else(|| field(&block[157..257]).to_vec());
        if link.len() > limits::MAX_PATH_BYTES {
            return Err(ArchiveError::PathTooLong { what: "link target", len: link.len() as u64 });
        }
        let mode = u32::try_from(number(&block[100..108], "mode")? & 0o7777).unwrap_or(0);
        let mtime_ns = match pending.mtime_ns {
            Some(ns) => ns,
            None => i64::try_from(number(&block[136..148], "mtime")?).unwrap_or(i64::MAX).saturating_mul(1_000_000_000),
        };
        let size = pending.size.unwrap_or(header_size);
        // Only files carry data; any other entry's size is skipped as padding.
        let data = if kind == Kind::File { size } else { 0 };
        self.left = data;
        self.padding = padded(size) - data;
        Ok(Header { path, kind, mode, mtime_ns, size: data, link })
    }

    /// Reads `size` bytes and the padding to the next block.
    fn read_padded(&mut self, size: u64) -> Result<Vec<u8>, ArchiveError> {
        let len = usize::try_from(size).map_err(|_| ArchiveError::Pax)?;
        let mut out = vec![0; len];
        self.inner.read_exact(&mut out)?;
        skip(&mut self.inner, padded(size) - size)?;
        Ok(out)
    }

    fn skip_rest(&mut self) -> Result<(), ArchiveError> {
        let n = self.left + self.padding;
        self.left = 0;
        self.padding = 0;
        skip(&mut self.inner, n)?;
        Ok(())
    }

    /// After the end marker: only zeros, and not too many, up to the end of
    /// the stream (where the zstd decoder checks the frame's checksum).
    fn drain_trailer(&mut self) -> Result<(), ArchiveError> {
        let mut buf = [0u8; 8192];
        let mut seen = 0usize;
        loop {
            let n = match self.inner.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            seen += n;
            if seen > limits::MAX_ARCHIVE_TRAILER || buf[..n].iter().any(|b| *b != 0) {
                return Err(ArchiveError::Trailing);
            }
        }
    }
}

/// The data of the entry last returned by [`Reader::next_header`].
pub struct Data<'a, R: Read> {
    reader: &'a mut Reader<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reader.left == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.reader.left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.reader.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside a file"));
        }
        self.reader.left -= n as u64;
        Ok(n)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// Reads one block; `false` at a clean end of stream before it.
fn read_block(inner: &mut impl Read, block: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut got = 0;
    while got < BLOCK {
        match inner.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside a header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn skip(inner: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut inner.take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside an entry"));
    }
    Ok(())
}

/// A NUL-terminated header field.
fn field(bytes: &[u8]) -> &[u8] {
    bytes.iter().position(|b| *b == 0).map_or(bytes, |end| &bytes[..end])
}

/// `prefix/name` for ustar headers, `name` for GNU and old ones.
fn ustar_path(block: &[u8; BLOCK]) -> Vec<u8> {
    let name = field(&block[0..100]);
    let is_ustar = &block[257..263] == b"ustar\0";
    let prefix = if is_ustar { field(&block[345..500]) } else { &[][..] };
    if prefix.is_empty() { name.to_vec() } else { [prefix, b"/", name].concat() }
}

/// A numeric header field: octal text, or GNU base-256 (high bit set) for
/// values too large for it. Negative base-256 values are refused.
fn number(bytes: &[u8], what: &'static str) -> Result<u64, ArchiveError> {
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        if bytes[0] & 0x40 != 0 {
            return Err(ArchiveError::Number(what));
        }
        let mut value: u64 = u64::from(bytes[0] & 0x3f);
        for b in &bytes[1..] {
            value = value.checked_mul(256).and_then(|v| v.checked_add(u64::from(*b))).ok_or(ArchiveError::Number(what))?;
        }
        return Ok(value);
    }
    let text = field(bytes);
    let digits: &[u8] = {
        let start = text.iter().position(|b| *b != b' ').unwrap_or(text.len());
        let end = text.iter().rposition(|b| *b != b' ').map_or(start, |i| i + 1);
        &text[start..end.max(start)]
    };
    if digits.is_empty() {
        return Ok(0);
    }
    digits.iter().try_fold(0u64, |acc, d| match d {
        b'0'..=b'7' => acc.checked_mul(8).and_then(|v| v.checked_add(u64::from(d - b'0'))).ok_or(ArchiveError::Number(what)),
        _ => Err(ArchiveError::Number(what)),
    })
}

/// The header checksum: the sum of its bytes with the checksum field read as
/// spaces (unsigned, or signed as some old writers did).
fn verify_checksum(block: &[u8; BLOCK]) -> Result<(), ArchiveError> {
    let stored = number(&block[148..156], "checksum").map_err(|_| ArchiveError::Checksum)?;
    let spaces = 8 * u64::from(b' ');
    let around = block[..148].iter().chain(&block[156..]);
    let unsigned: u64 = around.clone().map(|b| u64::from(*b)).sum::<u64>() + spaces;
    let signed: i64 = around.map(|b| i64::from(*b as i8)).sum::<i64>() + spaces as i64;
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) { Ok(()) } else { Err(ArchiveError::Checksum) }
}

/// Applies the PAX records `records` (`"<len> <key>=<value>\n"`…) to `pending`.
fn pax(mut records: &[u8], pending: &mut Pending) -> Result<(), ArchiveError> {
    while !records.is_empty() {
        let space = records.iter().position(|b| *b == b' ').ok_or(ArchiveError::Pax)?;
        let len: usize = std::str::from_utf8(&records[..space]).ok().and_then(|s| s.parse().ok()).ok_or(ArchiveError::Pax)?;
        if len <= space + 1 || len > records.len() || records[len - 1] != b'\n' {
            return Err(ArchiveError::Pax);
        }
        let record = &records[space + 1..len - 1];
        records = &records[len..];
        let eq = record.iter().position(|b| *b == b'=').ok_or(ArchiveError::Pax)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => {
                if value.len() > limits::MAX_PATH_BYTES {
                    return Err(ArchiveError::PathTooLong { what: "PAX path", len: value.len() as u64 });
                }
                pending.path = Some(value.to_vec());
            }
            b"linkpath" => {
                if value.len() > limits::MAX_PATH_BYTES {
                    return Err(ArchiveError::PathTooLong { what: "PAX link target", len: value.len() as u64 });
                }
                pending.link = Some(value.to_vec());
            }
            b"mtime" => pending.mtime_ns = std::str::from_utf8(value).ok().and_then(parse_pax_time),
            b"size" => pending.size = Some(std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).ok_or(ArchiveError::Pax)?),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative) into nanoseconds.
pub fn parse_pax_time(s: &str) -> Option<i64> {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    let total = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_pax_time("12.000000001"), Some(12_000_000_001));
        assert_eq!(parse_pax_time("7"), Some(7_000_000_000));
        assert_eq!(parse_pax_time("-1.5"), Some(-1_500_000_000));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time("1.1234567890"), None);
    }

    /// What the `tar` crate's builder writes (as hutch's host does) reads
    /// back entry for entry, with PAX times, long names and large sizes.
    #[test]
    fn reads_what_the_tar_crate_writes() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut pax = tar::Header::new_ustar();
        let record = b"30 mtime=1700000000.123456789\n";
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        builder.append(&pax, &record[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(5);
        h.set_mtime(3);
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(200));
        builder.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let mut d = tar::Header::new_gnu();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_mode(0o700);
        d.set_mtime(9);
        builder.append_data(&mut d, "dir", io::empty()).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_mtime(1);
        builder.append_link(&mut l, "link", "x".repeat(300)).unwrap();
        let bytes = builder.into_inner().unwrap();

        let mut reader = Reader::new(bytes.as_slice());
        let file = reader.next_header().unwrap().unwrap();
        assert_eq!(
            (file.path.as_slice(), file.kind, file.mode, file.mtime_ns, file.size),
            (long.as_bytes(), Kind::File, 0o755, 1_700_000_000_123_456_789, 5)
        );
        let mut data = Vec::new();
        reader.data().read_to_end(&mut data).unwrap();
        assert_eq!(data, b"hello");
        let dir = reader.next_header().unwrap().unwrap();
        assert_eq!((dir.path.as_slice(), dir.kind, dir.mode, dir.mtime_ns), (&b"dir"[..], Kind::Directory, 0o700, 9_000_000_000));
        let link = reader.next_header().unwrap().unwrap();
        assert_eq!((link.kind, link.link), (Kind::Symlink, "x".repeat(300).into_bytes()));
        assert_eq!(reader.next_header().unwrap(), None);
    }

    #[test]
    fn base_256_sizes_are_read_and_negative_ones_refused() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&(10u64 << 30).to_be_bytes());
        assert_eq!(number(&field, "size").unwrap(), 10 << 30);
        field[0] = 0xff;
        assert!(number(&field, "size").is_err());
        assert_eq!(number(b"0000644 \0", "mode").unwrap(), 0o644);
        assert!(number(b"9\0", "mode").is_err());
    }

    #[test]
    fn oversized_extension_headers_are_refused_from_their_header_alone() {
        for (kind, size) in [(tar::EntryType::GNULongName, 1u64 << 30), (tar::EntryType::XHeader, 1 << 30)] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_cksum();
            // Only the header is there: the reader must not try to read the rest.
            let err = Reader::new(h.as_bytes().as_slice()).next_header().unwrap_err();
            assert!(matches!(err, ArchiveError::PathTooLong { .. } | ArchiveError::PaxTooLarge(_)), "{err}");
        }
    }

    #[test]
    fn anything_but_zeros_after_the_end_is_refused() {
        let mut bytes = vec![0u8; 1024];
        assert_eq!(Reader::new(bytes.as_slice()).next_header().unwrap(), None);
        bytes.push(1);
        assert!(matches!(Reader::new(bytes.as_slice()).next_header(), Err(ArchiveError::Trailing)));
    }
}
