//! The archive of a Sync: the entries to send as one tar stream, compressed
//! with zstd, cut into gRPC-sized chunks as it is produced.
//!
//! Built on a blocking thread: files are read, archived and compressed while
//! earlier chunks are already on the wire and being unpacked in the guest.
//! Each entry is preceded by a PAX `mtime` record, since tar headers only hold
//! whole seconds and the quick check compares nanoseconds.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use hutch_proto::v1::sync_request::Kind;
use hutch_proto::v1::{EntryKind, ManifestEntry, SyncRequest};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tar::{EntryType, Header};
use tokio::sync::mpsc;

/// Compressed bytes per `archive` message.
const CHUNK: usize = 256 * 1024;
/// zstd level: fast, since the link is usually faster than a slow level.
const ZSTD_LEVEL: i32 = 1;
/// How long a transfer runs before its progress bar appears.
const PROGRESS_AFTER: Duration = Duration::from_millis(300);

/// What an archive carried.
#[derive(Debug, Default)]
pub struct Archived {
    /// Bytes of file contents, uncompressed.
    pub raw: u64,
    /// Bytes sent, compressed.
    pub compressed: u64,
    /// The entries as sent (a file as read: its size, mtime and mode from
    /// the opened file); an entry gone since the walk is left out.
    pub entries: Vec<ManifestEntry>,
}

/// Writes `entries` (below `root`) as the archive, sending chunks on `tx`.
pub fn archive(root: &Path, entries: &[ManifestEntry], total: u64, tx: mpsc::Sender<SyncRequest>, progress: bool) -> io::Result<Archived> {
    let bar = Progress::new(total, progress);
    let chunks = ChunkWriter { tx, buf: Vec::with_capacity(CHUNK), sent: 0 };
    let mut builder = tar::Builder::new(encoder(chunks)?);
    let mut archived = Archived::default();
    for entry in entries {
        if let Some(sent) = append(&mut builder, root, entry)? {
            if sent.kind == EntryKind::EntryFile as i32 {
                archived.raw += sent.size;
            }
            archived.entries.push(sent);
        }
        bar.set(archived.raw);
    }
    let encoder = builder.into_inner()?;
    let mut chunks = encoder.finish()?;
    chunks.flush_chunk()?;
    bar.done();
    archived.compressed = chunks.sent;
    Ok(archived)
}

/// The archive's compressor. Each frame carries its content checksum, which
/// the agent checks at the end of the stream: a byte corrupted on the way is
/// a refused sync, never a wrong file in the snapshot.
fn encoder<W: Write>(out: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
    encoder.include_checksum(true)?;
    Ok(encoder)
}

/// Appends one entry; returns it as sent (`None`: gone since the walk).
fn append<W: Write>(builder: &mut tar::Builder<W>, root: &Path, entry: &ManifestEntry) -> io::Result<Option<ManifestEntry>> {
    let rel = Path::new(std::ffi::OsStr::from_bytes(&entry.path));
    let full = root.join(rel);
    let mut header = Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    match EntryKind::try_from(entry.kind) {
        Ok(EntryKind::EntryFile) => {
            let file = match File::options().read(true).custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits()).open(&full) {
                Ok(file) => file,
                // Gone or replaced since the walk: the next sync sees what it became.
                Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(nix::libc::ELOOP) => return Ok(None),
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", full.display()))),
            };
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Ok(None);
            }
            let size = meta.len();
            let mtime_ns = meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec());
            pax_mtime(builder, mtime_ns)?;
            header.set_entry_type(EntryType::Regular);
            header.set_mode(meta.mode() & 0o7777);
            header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
            header.set_size(size);
            // Exactly `size` bytes, even if the file shrinks meanwhile (its new
            // mtime makes the next sync send it again).
            let data = file.take(size).chain(io::repeat(0)).take(size);
            builder.append_data(&mut header, rel, data)?;
            let mode = meta.mode() & hutch_proto::tree::SNAPSHOT_MODE_BITS;
            Ok(Some(ManifestEntry { size, mtime_ns, mode, ..entry.clone() }))
        }
        Ok(EntryKind::EntryDirectory) => {
            pax_mtime(builder, entry.mtime_ns)?;
            header.set_entry_type(EntryType::Directory);
            header.set_mode(entry.mode);
            header.set_mtime(u64::try_from(entry.mtime_ns / 1_000_000_000).unwrap_or(0));
            header.set_size(0);
            builder.append_data(&mut header, rel, io::empty())?;
            Ok(Some(entry.clone()))
        }
        Ok(EntryKind::EntrySymlink) => {
            let target = match std::fs::read_link(&full) {
                Ok(target) => target,
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::InvalidInput => return Ok(None),
                Err(e) => return Err(e),
            };
            pax_mtime(builder, entry.mtime_ns)?;
            header.set_entry_type(EntryType::Symlink);
            header.set_mode(0o777);
            header.set_mtime(u64::try_from(entry.mtime_ns / 1_000_000_000).unwrap_or(0));
            header.set_size(0);
            builder.append_link(&mut header, rel, &target)?;
            Ok(Some(ManifestEntry { link_target: target.as_os_str().as_bytes().to_vec(), ..entry.clone() }))
        }
        _ => Ok(None),
    }
}

/// Writes a PAX extended header holding `mtime` with nanoseconds.
fn pax_mtime<W: Write>(builder: &mut tar::Builder<W>, mtime_ns: i64) -> io::Result<()> {
    let value = format!("{}.{:09}", mtime_ns.div_euclid(1_000_000_000), mtime_ns.rem_euclid(1_000_000_000));
    let record = pax_record("mtime", &value);
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XHeader);
    header.set_path("PaxHeader")?;
    header.set_mode(0o644);
    header.set_size(record.len() as u64);
    header.set_cksum();
    builder.append(&header, record.as_slice())
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts itself.
pub fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// Collects compressed bytes into chunks and hands each to the gRPC stream.
struct ChunkWriter {
    tx: mpsc::Sender<SyncRequest>,
    buf: Vec<u8>,
    sent: u64,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.sent += chunk.len() as u64;
        self.tx
            .blocking_send(SyncRequest { kind: Some(Kind::Archive(chunk)) })
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the agent ended the sync"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A byte-count progress bar on stderr, shown only on a terminal and only
/// once the transfer has taken longer than a moment.
struct Progress {
    bar: ProgressBar,
    begin: Instant,
    enabled: bool,
}

impl Progress {
    fn new(total: u64, enabled: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("hutch: syncing {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
            bar.set_style(style);
        }
        let enabled = enabled && std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress { bar, begin: Instant::now(), enabled }
    }

    fn set(&self, done: u64) {
        if self.enabled && self.bar.is_hidden() && self.begin.elapsed() > PROGRESS_AFTER {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.set_position(done);
    }

    fn done(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{encoder, pax_record};

    #[test]
    fn archives_carry_a_content_checksum() {
        let mut out = encoder(Vec::new()).unwrap();
        out.write_all(b"some file contents").unwrap();
        let frame = out.finish().unwrap();
        assert_eq!(&frame[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        // Frame header descriptor, bit 2: Content_Checksum_flag (RFC 8878 3.1.1.1.1).
        assert_ne!(frame[4] & 0b100, 0, "the frame carries its checksum");
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("mtime", "1.5"), b"13 mtime=1.5\n");
        let long = pax_record("mtime", "1700000000.123456789");
        assert_eq!(long.len(), 30);
        assert!(long.starts_with(b"30 "));
    }
}
