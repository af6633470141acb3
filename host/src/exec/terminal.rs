//! The local terminal in PTY mode: raw mode that is always undone, and sizes.
//!
//! Raw mode is restored on every way out: the guard's `Drop`, an explicit
//! [`RawMode::restore`] before `process::exit` (which skips destructors), and a
//! panic hook. The saved settings live in a process-wide slot because a panic
//! hook cannot borrow anything.

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Mutex, Once, PoisonError};

use nix::libc;
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

/// The terminal settings to put back, if raw mode is on.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);
static HOOK: Once = Once::new();

nix::ioctl_read_bad!(
    /// TIOCGWINSZ: the terminal's size in rows and columns.
    get_winsize,
    libc::TIOCGWINSZ,
    libc::winsize
);

/// Puts stdin's terminal in raw mode for as long as it lives.
pub struct RawMode(());

impl RawMode {
    /// Switches stdin to raw mode. Does nothing (and returns `None`) when stdin
    /// is not a terminal.
    pub fn enable() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let original = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = original.clone();
        cfmakeraw(&mut raw);
        *SAVED.lock().unwrap_or_else(PoisonError::into_inner) = Some(original);
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                RawMode::restore();
                previous(info);
            }));
        });
        tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawMode(()))
    }

    /// Puts the saved settings back (idempotent).
    pub fn restore() {
        if let Some(original) = SAVED.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &original);
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        RawMode::restore();
    }
}

/// The size of the local terminal (rows, cols), from stdout, stdin or stderr,
/// whichever is a terminal.
pub fn size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    let inp = std::io::stdin();
    let err = std::io::stderr();
    [out.as_fd(), inp.as_fd(), err.as_fd()].into_iter().find_map(size_of)
}

fn size_of(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` to the valid pointer.
    unsafe { get_winsize(fd.as_raw_fd(), &mut ws) }.ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}
