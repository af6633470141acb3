//! Pseudo-terminals for PTY-mode execs.
//!
//! The master is opened with `O_CLOEXEC` and the slave is opened by name with
//! `O_CLOEXEC` too (instead of `openpty(3)`, whose descriptors are inheritable):
//! with many execs starting concurrently, an inheritable slave would leak into
//! another exec's child and keep this terminal alive after its process exits.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{OFlag, open};
use nix::libc;
use nix::pty::{Winsize, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use nix::sys::termios::{SpecialCharacterIndices, tcgetattr};

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);

/// Size used when the client sends none (or zeros).
pub const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// A freshly allocated terminal: the master stays with the agent, the slave
/// becomes the child's stdin/stdout/stderr and controlling terminal.
pub struct Pty {
    /// The agent's side.
    pub master: OwnedFd,
    /// The child's side; must be dropped by the agent once the child is spawned.
    pub slave: OwnedFd,
}

impl Pty {
    /// Allocates a terminal of `rows` x `cols`.
    pub fn open(rows: u16, cols: u16) -> io::Result<Self> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname_r(&master)?;
        let slave = open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())?;
        let master: OwnedFd = master.into();
        resize(master.as_fd(), rows, cols)?;
        Ok(Self { master, slave })
    }
}

/// Sets the terminal size; the kernel sends SIGWINCH to the foreground group.
pub fn resize(master: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let (rows, cols) = if rows == 0 || cols == 0 { DEFAULT_SIZE } else { (rows, cols) };
    let size = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from the pointer, which is valid.
    unsafe { set_winsize(master.as_raw_fd(), &size) }?;
    Ok(())
}

/// The bytes that make a reader of this terminal see end-of-file: the VEOF
/// character (usually ^D), twice when the current line is not empty, because
/// the first one only ends the pending line.
pub fn eof_sequence(master: BorrowedFd<'_>, line_pending: bool) -> io::Result<Vec<u8>> {
    let termios = tcgetattr(master)?;
    let veof = termios.control_chars[SpecialCharacterIndices::VEOF as usize];
    Ok(if line_pending { vec![veof, veof] } else { vec![veof] })
}

/// Called in the child between fork and exec: makes the (already dup'ed onto
/// fd 0) slave the controlling terminal of the new session.
///
/// Only async-signal-safe calls are allowed here.
pub fn make_controlling_terminal() -> io::Result<()> {
    // SAFETY: plain ioctl on fd 0 with an integer argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY as _, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
