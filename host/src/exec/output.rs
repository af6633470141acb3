//! Where remote output goes: straight to local stdout/stderr (in arrival
//! order, through one writer thread so a blocked terminal never stalls the
//! event loop), or into memory for `--json`.
//!
//! The writer thread starts with the first chunk: a command that prints
//! nothing (`hutch exec -- true`, the commonest call from scripts) pays for
//! no thread. Chunks are written to fds 1 and 2 directly, not through std's
//! line-buffered `Stdout`, which would scan every chunk for newlines and copy
//! the tail of it.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, FromRawFd, RawFd};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::untrusted::limits;

/// Chunks waiting for the writer thread; when full, hutch stops reading from
/// the agent and HTTP/2 flow control slows the remote process down.
const WRITE_QUEUE: usize = 8;

/// Which local stream a chunk belongs to.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Local stdout.
    Stdout,
    /// Local stderr.
    Stderr,
}

/// Receives the remote output.
pub enum Sink {
    /// Writes to the local stdout/stderr as it arrives.
    Local(LocalWriter),
    /// Keeps the output for the JSON report, up to
    /// [`limits::CAPTURED_BYTES`] per stream.
    Capture(Captured),
}

/// What `--json` keeps of a command's output: each stream up to
/// [`limits::CAPTURED_BYTES`], and how much was left out past it (the
/// command runs on; its output is read and counted, not kept).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// Stdout, up to the cap.
    pub stdout: Vec<u8>,
    /// Stderr, up to the cap.
    pub stderr: Vec<u8>,
    /// Bytes of stdout past the cap.
    pub stdout_cut: u64,
    /// Bytes of stderr past the cap.
    pub stderr_cut: u64,
}

impl Captured {
    fn keep(&mut self, target: Stream, data: &[u8]) {
        let (kept, cut) = match target {
            Stream::Stdout => (&mut self.stdout, &mut self.stdout_cut),
            Stream::Stderr => (&mut self.stderr, &mut self.stderr_cut),
        };
        let room = limits::CAPTURED_BYTES.max_usize().saturating_sub(kept.len());
        let taken = data.len().min(room);
        kept.extend_from_slice(&data[..taken]);
        *cut += (data.len() - taken) as u64;
    }
}

/// The handle to the writer thread, once there is one.
pub struct LocalWriter {
    chunks: Option<mpsc::Sender<(Stream, Bytes)>>,
    thread: Option<JoinHandle<()>>,
    broken_tx: Option<watch::Sender<bool>>,
    broken: watch::Receiver<bool>,
    /// Used when no thread could be started: writes happen inline.
    inline: Option<Writer>,
}

impl Sink {
    /// A sink that writes to the local terminal/pipes.
    pub fn local() -> Self {
        let (broken_tx, broken) = watch::channel(false);
        Sink::Local(LocalWriter { chunks: None, thread: None, broken_tx: Some(broken_tx), broken, inline: None })
    }

    /// A sink that captures the output (up to its cap).
    pub fn capture() -> Self {
        Sink::Capture(Captured::default())
    }

    /// Hands over one chunk; waits when the local side is slow.
    pub async fn write(&mut self, target: Stream, data: Bytes) {
        match self {
            Sink::Local(writer) => writer.write(target, data).await,
            Sink::Capture(captured) => captured.keep(target, &data),
        }
    }

    /// Resolves when local stdout turns out to be a closed pipe (the reader
    /// went away, as in `hutch exec -- yes | head -1`). Never resolves otherwise.
    pub async fn broken_pipe(&mut self) {
        match self {
            Sink::Local(writer) => {
                if writer.broken.wait_for(|broken| *broken).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            Sink::Capture(_) => std::future::pending().await,
        }
    }

    /// Waits until everything handed over has been written.
    pub fn finish(&mut self) {
        if let Sink::Local(writer) = self {
            writer.chunks = None;
            if let Some(thread) = writer.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// The captured output, if this sink captures.
    pub fn captured(self) -> Option<Captured> {
        match self {
            Sink::Capture(captured) => Some(captured),
            Sink::Local(_) => None,
        }
    }
}

impl LocalWriter {
    async fn write(&mut self, target: Stream, data: Bytes) {
        if self.chunks.is_none() && self.inline.is_none() {
            self.start_thread();
        }
        if let Some(tx) = &self.chunks {
            let _ = tx.send((target, data)).await;
        } else if let Some(writer) = &mut self.inline {
            writer.write(target, &data);
        }
    }

    fn start_thread(&mut self) {
        let Some(broken_tx) = self.broken_tx.take() else { return };
        let (tx, mut rx) = mpsc::channel::<(Stream, Bytes)>(WRITE_QUEUE);
        let mut writer = Writer::new(broken_tx.clone());
        let spawned = std::thread::Builder::new().name("output".into()).spawn(move || {
            while let Some((target, data)) = rx.blocking_recv() {
                writer.write(target, &data);
            }
        });
        match spawned {
            Ok(thread) => {
                self.chunks = Some(tx);
                self.thread = Some(thread);
            }
            Err(e) => {
                eprintln!("hutch: warning: cannot start the output thread ({e}); writing output from the main thread");
                self.inline = Some(Writer::new(broken_tx));
            }
        }
    }
}

/// Writes chunks to fds 1 and 2, and reports a closed stdout pipe once.
struct Writer {
    stdout: ManuallyDrop<File>,
    stderr: ManuallyDrop<File>,
    stdout_ok: bool,
    broken_tx: watch::Sender<bool>,
}

impl Writer {
    fn new(broken_tx: watch::Sender<bool>) -> Self {
        Writer { stdout: borrow_fd(1), stderr: borrow_fd(2), stdout_ok: true, broken_tx }
    }

    fn write(&mut self, target: Stream, data: &[u8]) {
        match target {
            Stream::Stdout if self.stdout_ok => {
                if let Err(e) = write_all(&self.stdout, data) {
                    self.stdout_ok = false;
                    if e.kind() == ErrorKind::BrokenPipe {
                        let _ = self.broken_tx.send(true);
                    }
                }
            }
            Stream::Stdout => {}
            Stream::Stderr => {
                let _ = write_all(&self.stderr, data);
            }
        }
    }
}

/// A `File` for one of the standard descriptors, never closed by hutch.
fn borrow_fd(fd: RawFd) -> ManuallyDrop<File> {
    // SAFETY: fds 1 and 2 stay open for the life of the process (if the parent
    // closed one, writes fail with EBADF, which is reported as a write error);
    // `ManuallyDrop` keeps this `File` from ever closing it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

/// `write_all`, waiting for room when the descriptor is non-blocking (a
/// terminal shared with a process that set `O_NONBLOCK` on it).
fn write_all(mut file: &File, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match file.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_writable(file)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn wait_writable(file: &File) -> std::io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_up_to_its_cap_and_counts_the_rest() {
        let mut captured = Captured::default();
        let cap = limits::CAPTURED_BYTES.max_usize();
        captured.keep(Stream::Stdout, &vec![b'a'; cap - 1]);
        captured.keep(Stream::Stdout, b"bcd");
        captured.keep(Stream::Stderr, b"err");
        assert_eq!(captured.stdout.len(), cap);
        assert_eq!(&captured.stdout[cap - 2..], b"ab");
        assert_eq!((captured.stdout_cut, captured.stderr_cut), (2, 0));
        assert_eq!(captured.stderr, b"err");
    }
}
