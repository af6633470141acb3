//! The detach keys: `Ctrl-\` twice in a row, on a raw local terminal attached
//! to a session (`hutch attach`, `hutch exec --keep -t`).
//!
//! Why this pair: `~.` (ssh's escape) is taken by the ssh session many people
//! reach their workstation through, and would close that instead; Docker's
//! `Ctrl-P Ctrl-Q` eats shells' Ctrl-P (previous command). A single `Ctrl-\`
//! still reaches the session (SIGQUIT for its program), only held back until
//! the next key, or [`HOLD`] without one, to see whether a second follows.
//!
//! Like `stdin::forward`, a plain thread reads the terminal; it sends
//! `detach` when it sees the pair and stops reading.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::Duration;

use hutch_proto::MAX_CHUNK;
use hutch_proto::v1::exec_request::Kind;
use hutch_proto::v1::{CloseStdin, Detach, ExecRequest};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::mpsc;

/// The key that, pressed twice in a row, detaches: Ctrl-\ (FS, 0x1c).
pub const DETACH_KEY: u8 = 0x1c;

/// Ctrl-C, which detaches a viewer (whose keys go nowhere).
const CTRL_C: u8 = 0x03;

/// How long a lone `Ctrl-\` is held back waiting for a second one.
pub const HOLD: Duration = Duration::from_millis(500);

/// What the scanner makes of the bytes read so far.
#[derive(Debug, Default)]
pub struct Scanner {
    held: bool,
}

impl Scanner {
    /// Passes `input` through: returns the bytes to send now, and whether the
    /// detach keys were pressed (bytes after them are dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len() + 1);
        for &byte in input {
            if byte == DETACH_KEY {
                if self.held {
                    self.held = false;
                    return (out, true);
                }
                self.held = true;
                continue;
            }
            if std::mem::take(&mut self.held) {
                out.push(DETACH_KEY);
            }
            out.push(byte);
        }
        (out, false)
    }

    /// Whether a lone `Ctrl-\` is being held back.
    pub fn holding(&self) -> bool {
        self.held
    }

    /// Lets a held-back `Ctrl-\` go (no second one came in time).
    pub fn release(&mut self) -> Option<u8> {
        std::mem::take(&mut self.held).then_some(DETACH_KEY)
    }
}

/// Starts the thread that forwards stdin (when `forward_input`; a viewer
/// only watches for the keys, and Ctrl-C) and sends `detach` on the detach keys.
pub fn forward(requests: mpsc::Sender<ExecRequest>, forward_input: bool) {
    let spawned = std::thread::Builder::new().name("stdin".into()).spawn(move || read_keys(&requests, forward_input));
    if let Err(e) = spawned {
        eprintln!("hutch: warning: cannot start the stdin thread ({e}); the command gets no input");
    }
}

fn read_keys(requests: &mpsc::Sender<ExecRequest>, forward_input: bool) {
    let send = |kind: Kind| requests.blocking_send(ExecRequest { kind: Some(kind) }).is_ok();
    let send_bytes = |bytes: Vec<u8>| bytes.is_empty() || !forward_input || send(Kind::Stdin(bytes.into()));
    let mut scanner = Scanner::default();
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; MAX_CHUNK];
    loop {
        if scanner.holding() && !readable_within(HOLD) {
            let lone = scanner.release().map(|b| vec![b]).unwrap_or_default();
            if !send_bytes(lone) {
                return;
            }
        }
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if super::ask::intercept(&buf[..n]) {
            continue;
        }
        let (out, detach) = scanner.feed(&buf[..n]);
        // A viewer sends nothing, so Ctrl-C means "leave" for it.
        let viewer_leaves = !forward_input && out.contains(&CTRL_C);
        if !send_bytes(out) {
            return;
        }
        if detach || viewer_leaves {
            let _ = send(Kind::Detach(Detach {}));
            return;
        }
    }
    if forward_input {
        let lone = scanner.release().map(|b| vec![b]).unwrap_or_default();
        if send_bytes(lone) {
            let _ = send(Kind::CloseStdin(CloseStdin {}));
        }
    }
}

/// Whether stdin has bytes within `wait`.
fn readable_within(wait: Duration) -> bool {
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    matches!(poll(&mut fds, PollTimeout::from(millis)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_in_a_row_detach_and_nothing_after_them_is_sent() {
        let mut scanner = Scanner::default();
        assert_eq!(scanner.feed(b"ls\r\x1c\x1cmore"), (b"ls\r".to_vec(), true));
    }

    #[test]
    fn a_lone_one_is_held_then_passed_on() {
        let mut scanner = Scanner::default();
        assert_eq!(scanner.feed(b"a\x1c"), (b"a".to_vec(), false));
        assert!(scanner.holding());
        assert_eq!(scanner.feed(b"b"), (b"\x1cb".to_vec(), false));
        assert_eq!(scanner.feed(b"\x1c"), (Vec::new(), false));
        assert_eq!(scanner.release(), Some(DETACH_KEY));
        assert_eq!(scanner.release(), None);
    }

    #[test]
    fn the_pair_may_span_two_reads() {
        let mut scanner = Scanner::default();
        assert_eq!(scanner.feed(b"x\x1c"), (b"x".to_vec(), false));
        assert_eq!(scanner.feed(b"\x1c"), (Vec::new(), true));
    }
}
