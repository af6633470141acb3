//! The SSH password for `--password`: from `HUTCH_SSH_PASSWORD`, else asked
//! on the terminal without echo. Never from the command line, where other
//! users could read it in the process list.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;

use nix::sys::termios::{self, LocalFlags, SetArg};

use super::error::InstallError;

/// The variable scripts set instead of typing the password.
pub const PASSWORD_ENV: &str = "HUTCH_SSH_PASSWORD";

/// The password for `user@dest`.
pub fn read(user: &str, dest: &str) -> Result<String, InstallError> {
    if let Some(password) = std::env::var_os(PASSWORD_ENV) {
        return password.into_string().map_err(|_| InstallError::Password(format!("{PASSWORD_ENV} is not valid UTF-8")));
    }
    prompt(&format!("{user}@{dest}'s password: "))
}

/// Asks on /dev/tty with echo off, restoring the terminal afterwards.
fn prompt(text: &str) -> Result<String, InstallError> {
    let fail = |e: std::io::Error| InstallError::Password(format!("no terminal to ask on ({e}) and {PASSWORD_ENV} is not set"));
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(fail)?;
    let saved = termios::tcgetattr(tty.as_fd()).map_err(|e| fail(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    (&tty).write_all(text.as_bytes()).map_err(fail)?;
    termios::tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &quiet).map_err(|e| fail(e.into()))?;
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    let _ = termios::tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &saved);
    read.map_err(fail)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
