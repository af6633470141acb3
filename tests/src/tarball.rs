//! Hand-made tar archives for `--ro` snapshot tests: headers written byte by
//! byte (names unchecked, sizes claimed at will), so a test can feed the
//! agent what no honest tar writer produces.

use std::io::Write;

use tar::{EntryType, Header};

/// A raw GNU tar header: the name bytes go in as given, unchecked.
pub fn header(name: &[u8], kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1);
    h.set_cksum();
    h
}

/// `data` padded with zeros to a whole number of 512-byte blocks.
pub fn padded(mut data: Vec<u8>) -> Vec<u8> {
    data.resize(data.len().div_ceil(512) * 512, 0);
    data
}

/// A regular file entry.
pub fn file(name: &[u8], data: &[u8]) -> Vec<u8> {
    file_mode(name, data, 0o644)
}

/// A regular file entry with `mode`.
pub fn file_mode(name: &[u8], data: &[u8], mode: u32) -> Vec<u8> {
    let mut h = header(name, EntryType::Regular, data.len() as u64);
    h.set_mode(mode);
    h.set_cksum();
    padded([h.as_bytes().as_slice(), data].concat())
}

/// A folder entry.
pub fn dir(name: &[u8]) -> Vec<u8> {
    let mut h = header(name, EntryType::Directory, 0);
    h.set_mode(0o755);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// An entry of `kind` with a link name (symlink, hard link; devices and
/// fifos take an empty target).
pub fn link(name: &[u8], kind: EntryType, target: &[u8]) -> Vec<u8> {
    let mut h = header(name, kind, 0);
    h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A GNU long-name record (`././@LongLink`, type `L`) for `name`.
pub fn gnu_long_name(name: &[u8]) -> Vec<u8> {
    let h = header(b"././@LongLink", EntryType::GNULongName, name.len() as u64 + 1);
    padded([h.as_bytes().as_slice(), name, b"\0"].concat())
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts itself.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = [b" ", key, b"=", value, b"\n"].concat();
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    [len.to_string().as_bytes(), &body].concat()
}

/// A PAX extended header (type `x`) carrying `path`.
pub fn pax_path(name: &[u8]) -> Vec<u8> {
    let record = pax_record(b"path", name);
    let h = header(b"PaxHeader", EntryType::XHeader, record.len() as u64);
    padded([h.as_bytes().as_slice(), &record].concat())
}

/// The end-of-archive marker: two zero blocks.
pub fn end() -> Vec<u8> {
    vec![0; 1024]
}

/// `parts` and the end marker, compressed the way hutch does.
pub fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut tar = parts.concat();
    tar.extend_from_slice(&end());
    crate::snapshot::zstd(&tar)
}

/// A header claiming `size` bytes of `kind` (a long name, a PAX header, a
/// file), followed by that many bytes of `fill` and the end marker, streamed
/// through zstd (with a checksum) without ever holding them: a few KB that
/// expand to `size`.
pub fn bomb(name: &[u8], kind: EntryType, size: u64, fill: u8) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd encoder");
    encoder.include_checksum(true).expect("zstd checksum flag");
    encoder.write_all(header(name, kind, size).as_bytes()).expect("compress");
    let block = vec![fill; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64);
        encoder.write_all(&block[..n as usize]).expect("compress");
        left -= n;
    }
    let pad = (512 - size % 512) % 512;
    encoder.write_all(&vec![0; pad as usize]).expect("compress");
    encoder.write_all(&end()).expect("compress");
    encoder.finish().expect("finish zstd")
}
