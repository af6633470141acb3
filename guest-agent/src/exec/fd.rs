//! A non-blocking file descriptor driven by tokio's reactor.
//!
//! Pipes and PTY masters are handled the same way: the parent's end is put in
//! non-blocking mode and wrapped here, so the output pump and the stdin writer
//! need not care which kind of file they talk to. A PTY master is one fd for
//! both directions, so it is shared (`Arc<AsyncPipe>`) between reader and writer.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// One end of a pipe or a PTY master, readable and writable without blocking a thread.
pub struct AsyncPipe {
    fd: AsyncFd<OwnedFd>,
}

/// What one read returned.
pub enum ReadOutcome {
    /// Bytes were appended to the buffer.
    Data,
    /// The other side is closed for good (EOF, or EIO on a PTY master whose
    /// terminal has no more holders).
    Eof,
    /// Nothing available right now (only from [`AsyncPipe::try_read`]).
    Empty,
}

impl AsyncPipe {
    /// Takes ownership of `fd`, switches it to non-blocking mode and registers it.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: `OwnedFd` owns a valid descriptor, and it is neither closed nor
        // replaced while the `AsyncFd` owns it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Waits until data (or EOF) is available and appends it to `buf`, up to
    /// its capacity (the spare capacity is filled without zeroing it first).
    /// A full (or never allocated) `buf` first gets room for `room` bytes, and
    /// only once the pipe is readable: a stream that stays silent (`true`,
    /// most stderr) never allocates.
    pub async fn read(&self, buf: &mut Vec<u8>, room: usize) -> io::Result<ReadOutcome> {
        loop {
            let mut guard = self.fd.readable().await?;
            make_room(buf, room);
            match guard.try_io(|fd| read_once(fd.get_ref(), buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Appends what is available now to `buf` (up to its capacity), without
    /// waiting; a full `buf` first gets room for `room` bytes.
    pub fn try_read(&self, buf: &mut Vec<u8>, room: usize) -> io::Result<ReadOutcome> {
        make_room(buf, room);
        match read_once(self.fd.get_ref(), buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::Empty),
            other => other,
        }
    }

    /// Waits until the descriptor is readable, then calls `read` with it
    /// (which reads where it likes, e.g. with [`read_slice`] into a session's
    /// buffer); `WouldBlock` from it waits again. Returns what `read` returned.
    pub async fn read_with(&self, mut read: impl FnMut(BorrowedFd<'_>) -> io::Result<usize>) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read(fd.get_ref().as_fd())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Calls `read` with the descriptor now, without waiting: `Ok(None)` when
    /// it would block.
    pub fn try_read_with(&self, read: impl FnOnce(BorrowedFd<'_>) -> io::Result<usize>) -> io::Result<Option<usize>> {
        match read(self.fd.get_ref().as_fd()) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes all of `data`, waiting for room as needed.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// The underlying descriptor, for ioctls (terminal size, termios).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

/// Gives a full `buf` room for `room` more bytes (malloc, no zeroing).
fn make_room(buf: &mut Vec<u8>, room: usize) {
    if buf.len() == buf.capacity() {
        buf.reserve_exact(room);
    }
}

/// One `read(2)` into `slice`: 0 at EOF (or EIO on a PTY master whose
/// terminal has no more holders), `WouldBlock` when nothing is there.
pub fn read_slice(fd: BorrowedFd<'_>, slice: &mut [u8]) -> io::Result<usize> {
    match nix::unistd::read(fd, slice) {
        Ok(n) => Ok(n),
        Err(Errno::EIO) => Ok(0),
        Err(Errno::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e.into()),
    }
}

fn read_once(fd: &OwnedFd, buf: &mut Vec<u8>) -> io::Result<ReadOutcome> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    if spare.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "read into a full buffer"));
    }
    // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `buf`;
    // read(2) initialises the first `n` of them, which `set_len` then covers.
    let n = unsafe { nix::libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    let result = Errno::result(n).map(|n| n as usize);
    if let Ok(n) = result {
        // SAFETY: see above; `n <= spare.len()`.
        unsafe { buf.set_len(buf.len() + n) };
    }
    match result {
        Ok(0) => Ok(ReadOutcome::Eof),
        Ok(_) => Ok(ReadOutcome::Data),
        // A PTY master reports EIO once every slave descriptor is closed.
        Err(Errno::EIO) => Ok(ReadOutcome::Eof),
        Err(Errno::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e.into()),
    }
}
