//! The guest kernel, uncompressed.
//!
//! A distribution's `vmlinuz` is a bzImage: firmware (SeaBIOS) loads it and the
//! guest decompresses itself, which under TCG emulation costs about 5 s of a
//! ~9.6 s boot. The ELF `vmlinux` inside it has a PVH entry note
//! (CONFIG_PVH=y, as in Debian), so QEMU can start it directly: ~4 s.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::workspace::Result;

/// Compression formats a bzImage payload may use: magic bytes and the
/// command that decompresses a stream starting there.
const FORMATS: &[(&[u8], &str, &[&str])] =
    &[(b"\xfd7zXZ\x00", "xz", &["-dc", "--single-stream"]), (b"\x28\xb5\x2f\xfd", "zstd", &["-dc"]), (b"\x1f\x8b\x08", "gzip", &["-dc"])];

/// Extracts the ELF kernel from the bzImage at `bzimage`.
pub fn extract_vmlinux(bzimage: &Path) -> Result<Vec<u8>> {
    let image = std::fs::read(bzimage).map_err(|e| format!("{}: {e}", bzimage.display()))?;
    for (magic, tool, args) in FORMATS {
        for offset in find_all(&image, magic) {
            if let Some(elf) = decompress(tool, args, &image[offset..]).filter(|out| out.starts_with(b"\x7fELF")) {
                return Ok(elf);
            }
        }
    }
    Err(format!("no compressed ELF kernel found in {} (tried xz, zstd, gzip)", bzimage.display()).into())
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack.windows(needle.len()).enumerate().filter(move |(_, w)| *w == needle).map(|(i, _)| i)
}

/// Decompresses `data` with `tool`; trailing garbage after the stream is
/// expected (the rest of the bzImage), so only the output matters.
fn decompress(tool: &str, args: &[&str], data: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(tool).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().ok()?;
    let _ = feeder.join();
    (!out.stdout.is_empty()).then_some(out.stdout)
}
