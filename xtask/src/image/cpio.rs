//! A writer for the cpio "newc" format, the one the Linux kernel unpacks as an
//! initramfs. Just what an initramfs needs: directories, regular files and
//! symlinks, all owned by root, with a fixed timestamp so the same inputs
//! give the same bytes.

use std::io::{self, Write};

/// Builds an archive in memory.
pub struct Archive {
    out: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive { out: Vec::new(), next_ino: 1 }
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.entry(path, 0o040_000 | mode, &[]);
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, 0o100_000 | mode, data);
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, 0o120_777, target.as_bytes());
    }

    /// Finishes the archive (the trailer entry) and writes it out.
    pub fn write_to(mut self, mut w: impl Write) -> io::Result<()> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, &[]);
        w.write_all(&self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let name_len = path.len() + 1;
        let fields = [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, 0, 0, name_len as u32, 0];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_reads_what_we_write() {
        let mut archive = Archive::new();
        archive.dir("bin", 0o755);
        archive.file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n");
        archive.symlink("bin/sh", "busybox");
        let mut bytes = Vec::new();
        archive.write_to(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        // GNU cpio, when present, must list exactly our entries.
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            return;
        };
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bin\nbin/hello\nbin/sh\n");
    }
}
