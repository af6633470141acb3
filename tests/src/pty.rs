//! Running `hutch` on a real local terminal, as a person would: a PTY pair
//! made by the test, `hutch` as the session leader on its slave, and the test
//! reading the screen from the master.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::libc;
use nix::pty::{Winsize, openpty};
use nix::sys::termios::{LocalFlags, Termios, tcgetattr};

nix::ioctl_write_ptr_bad!(
    /// TIOCSWINSZ: sets the terminal's size in rows and columns.
    set_winsize,
    libc::TIOCSWINSZ,
    Winsize
);

/// A process running on a terminal the test owns.
pub struct OnPty {
    /// The process.
    pub child: Child,
    master: Arc<OwnedFd>,
    slave: OwnedFd,
    screen: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl OnPty {
    /// Spawns `cmd` on a new terminal of `rows` x `cols`, as its session leader.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> OnPty {
        let size = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = openpty(&size, None).expect("openpty");
        let slave_for = |_| Stdio::from(pty.slave.try_clone().expect("dup slave"));
        cmd.stdin(slave_for(0)).stdout(slave_for(1)).stderr(slave_for(2));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on pty");
        let master = Arc::new(pty.master);
        let screen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let (reader_fd, reader_screen) = (master.clone(), screen.clone());
        std::thread::spawn(move || {
            let mut file = std::fs::File::from(reader_fd.as_fd().try_clone_to_owned().expect("dup master"));
            let mut buf = [0u8; 4096];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (lock, cvar) = &*reader_screen;
                lock.lock().unwrap().extend_from_slice(&buf[..n]);
                cvar.notify_all();
            }
        });
        OnPty { child, master, slave: pty.slave, screen }
    }

    /// Waits until the screen contains `needle`; returns everything seen so far.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.screen;
        let mut seen = lock.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if text.contains(needle) {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {needle:?}; screen so far: {text:?}");
            seen = cvar.wait_timeout(seen, left).unwrap().0;
        }
    }

    /// Types `bytes` on the terminal.
    pub fn type_bytes(&self, bytes: &[u8]) {
        nix::unistd::write(self.master.as_fd(), bytes).expect("write to pty");
    }

    /// Changes the terminal size; the kernel sends SIGWINCH to the foreground group.
    pub fn resize(&self, rows: u16, cols: u16) {
        let size = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
        unsafe { set_winsize(self.master.as_raw_fd(), &size) }.expect("TIOCSWINSZ");
    }

    /// The terminal's current settings (as the process left them).
    pub fn termios(&self) -> Termios {
        tcgetattr(self.slave.as_fd()).expect("tcgetattr")
    }
}

/// Whether a terminal is in cooked mode (echo and line editing on).
pub fn is_cooked(t: &Termios) -> bool {
    t.local_flags.contains(LocalFlags::ECHO | LocalFlags::ICANON)
}
