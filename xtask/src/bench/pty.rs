//! PTY echo round trip: the delay between typing a key and seeing it, as a
//! person at an interactive remote shell would feel it.
//!
//! The client (`hutch exec -t` or `ssh -tt`) runs on a terminal this process
//! owns, as session leader with that terminal as its controlling terminal.
//! The remote side is a raw-mode terminal running `dd bs=1`, which writes each
//! byte back as soon as it reads it, as a line editor does; it exits after the
//! last byte, so the client ends on its own. One sample: write one byte to our
//! master, read until that byte comes back.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::{Winsize, openpty};

use super::stats::Stats;
use crate::workspace::Result;

/// Echoes not counted (connection and caches warming up).
const WARM_UP: usize = 20;
/// Longest wait for one echo, or for the remote side to start, in ms.
const ECHO_TIMEOUT_MS: u16 = 10_000;
/// What the remote side prints once its terminal is raw.
const READY: &[u8] = b"READY";

/// The remote shell command for `samples` echoed bytes (after warm-up).
pub fn remote_script(samples: usize) -> String {
    format!("stty raw -echo && echo READY && exec dd bs=1 count={} status=none", samples + WARM_UP)
}

/// Runs `client` (whose remote command is [`remote_script`]`(samples)`) on a
/// new local terminal and measures `samples` echo round trips, in ms.
pub fn echo_round_trips(mut client: Command, samples: usize) -> Result<Stats> {
    let size = Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = openpty(&size, None)?;
    let slave = |_| -> io::Result<Stdio> { Ok(Stdio::from(pty.slave.try_clone()?)) };
    client.stdin(slave(0)?).stdout(slave(1)?).stderr(slave(2)?);
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        client.pre_exec(|| {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = client.spawn()?;
    // Only the client holds the slave now, so the master sees EOF when it exits.
    drop(client);
    drop(pty.slave);
    let master = pty.master;

    let result = measure(&master, samples);
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let samples = result?;
    if !status.success() {
        return Err(format!("the PTY client failed: {status}").into());
    }
    Stats::of(samples).ok_or_else(|| "no echo samples".into())
}

fn measure(master: &OwnedFd, samples: usize) -> Result<Vec<f64>> {
    let mut seen = Vec::new();
    while !seen.windows(READY.len()).any(|w| w == READY) {
        seen.extend_from_slice(&read_some(master)?);
    }
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples + WARM_UP {
        let key = b'a' + (i % 26) as u8;
        let begin = Instant::now();
        nix::unistd::write(master.as_fd(), &[key])?;
        while !read_some(master)?.contains(&key) {}
        if i >= WARM_UP {
            times.push(begin.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(times)
}

/// Waits (bounded) for output on `master` and returns what one read gives.
fn read_some(master: &OwnedFd) -> Result<Vec<u8>> {
    let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::from(ECHO_TIMEOUT_MS))? == 0 {
        return Err(format!("no output from the PTY client within {ECHO_TIMEOUT_MS} ms").into());
    }
    let mut buf = [0u8; 4096];
    match nix::unistd::read(master, &mut buf) {
        Ok(0) | Err(nix::errno::Errno::EIO) => Err("the PTY client closed its terminal before the measurement ended".into()),
        Ok(n) => Ok(buf[..n].to_vec()),
        Err(e) => Err(e.into()),
    }
}
