//! The background forwarder of `hutch up --forward`: a `hutch forward --name
//! NAME …` process started detached (its own session, as the QEMU backend
//! starts its processes), its pid kept in the VM record, stopped by
//! `down`/`rm`.
//!
//! As with the VM's own processes, a recorded pid is signalled only while
//! `/proc/PID/cmdline` still says it is `hutch forward --name NAME`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{ForwardError, PortMapping};
use crate::backend::qemu::process::spawn_detached;
use crate::error::Error;
use crate::state::{StateDir, VmName, VmRecord};

/// The forwarder's log (its stdout and stderr) in the VM's state folder.
pub const LOG_FILE: &str = "forward.log";

/// How long the forwarder has to bind its ports and say so.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the forwarder has to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Pause between two looks at the forwarder's log or process.
const POLL: Duration = Duration::from_millis(10);

/// Replaces VM `name`'s forwarder (if any) by one for `mappings`, and records
/// its pid. The ports are checked here first, so a busy one fails `hutch up`
/// itself with the port's name.
pub fn start(state: &StateDir, name: &VmName, mappings: &[PortMapping]) -> Result<(), Error> {
    let dir = state.vm_dir(name);
    let mut record = state.load(name)?;
    stop(&mut record);
    record.save(&dir)?;
    drop(super::bind(mappings)?);

    let log = dir.join(LOG_FILE);
    let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
    let exe = std::env::current_exe().map_err(|e| Error::local("finding the hutch executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(["forward", "--name", name.as_str()]).args(mappings.iter().map(ToString::to_string)).env_remove("HUTCH_ADDR");
    let pid = spawn_detached(cmd, &log)?;
    record.forward_pid = Some(pid);
    record.save(&dir)?;
    wait_listening(pid, name, &log, offset, mappings.len())
}

/// Stops the VM's forwarder if it still runs, and forgets its pid.
pub fn stop(record: &mut VmRecord) {
    let Some(pid) = record.forward_pid.take() else { return };
    if !is_forwarder(pid, record.name.as_str()) {
        return;
    }
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    if !wait_gone(pid, record.name.as_str(), STOP_GRACE) {
        let _ = kill(target, Signal::SIGKILL);
        wait_gone(pid, record.name.as_str(), STOP_GRACE);
    }
}

/// Whether `pid` is alive and is `hutch forward --name NAME …`.
pub fn is_forwarder(pid: u32, name: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')));
    !zombie && names_forwarder(&cmdline, name)
}

/// Whether a NUL-separated command line is `… forward --name NAME …`.
fn names_forwarder(cmdline: &[u8], name: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.get(1) == Some(&b"forward".as_slice()) && args.windows(2).any(|w| w[0] == b"--name" && w[1] == name.as_bytes())
}

fn wait_gone(pid: u32, name: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_forwarder(pid, name) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Waits until the forwarder has printed its `listeners` lines into `log`
/// (after `offset`), failing with the log's news if it exits first.
fn wait_listening(pid: u32, name: &VmName, log: &Path, offset: u64, listeners: usize) -> Result<(), Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    let news = || {
        let text = std::fs::read(log).unwrap_or_default();
        String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default()).into_owned()
    };
    loop {
        if news().lines().filter(|line| line.contains(" → guest :")).count() >= listeners {
            return Ok(());
        }
        let failed = |why: String| Error::from(ForwardError::Detached { name: name.to_string(), why });
        if !is_forwarder(pid, name.as_str()) {
            let text = news();
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it exited without a word");
            return Err(failed(last.trim_start_matches("hutch: ").to_owned()));
        }
        if Instant::now() >= deadline {
            return Err(failed(format!("it did not report its listeners within {START_TIMEOUT:?} (see {})", log.display())));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_forwarder_for_this_vm_matches() {
        assert!(names_forwarder(b"/usr/bin/hutch\0forward\0--name\0web\08080\0", "web"));
        assert!(!names_forwarder(b"/usr/bin/hutch\0forward\0--name\0web2\08080\0", "web"));
        assert!(!names_forwarder(b"/usr/bin/hutch\0exec\0--name\0web\0--\0forward\0", "web"));
        assert!(!names_forwarder(b"/usr/bin/vim\0forward\0", "web"));
        assert!(!names_forwarder(b"", "web"));
    }
}
