//! `hutch audit [NAME] [--follow] [--json]`: a VM's audit log, every egress
//! decision and every command run in it, oldest first. `hutch log` is its
//! old name, kept hidden for one release (see [`deprecated_name`]).

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::cli::AuditArgs;
use crate::error::Error;
use crate::net::audit::{self, Event};
use crate::state::StateDir;
use crate::target::vm_name;

/// What `hutch log` says before doing what `hutch audit` does: the old name
/// was one letter away from `hutch logs` (a session's output), so it was
/// renamed, and scripts get one release to follow.
const DEPRECATED_NAME: &str = "hutch: `hutch log` is now `hutch audit`; the old name goes in the next release";

/// Runs `hutch log`, the old name of `hutch audit`: the same, after a notice
/// on stderr (stdout stays exactly `hutch audit`'s, for scripts).
pub async fn deprecated_name(args: AuditArgs) -> Result<u8, Error> {
    eprintln!("{DEPRECATED_NAME}");
    run(args).await
}

/// How often `--follow` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Runs `hutch audit`; returns the exit code.
pub async fn run(args: AuditArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let name = vm_name(&state, args.name.name())?;
    state.load(&name)?;
    let path = audit::path(&state.vm_dir(&name));
    let mut offset = 0u64;
    let mut partial = Vec::new();
    loop {
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::local(&format!("reading {}", path.display()), e)),
        };
        if let Some(file) = file.as_mut() {
            let len = file.metadata().map_or(0, |m| m.len());
            if len < offset {
                offset = 0; // replaced: start over
                partial.clear();
            }
            file.seek(SeekFrom::Start(offset)).map_err(|e| Error::local("reading the audit log", e))?;
            let mut fresh = Vec::new();
            file.read_to_end(&mut fresh).map_err(|e| Error::local("reading the audit log", e))?;
            offset += fresh.len() as u64;
            partial.extend_from_slice(&fresh);
            let complete = partial.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let lines: Vec<u8> = partial.drain(..complete).collect();
            print_lines(&lines, args.json)?;
        }
        if !args.follow {
            return Ok(0);
        }
        if !state.vm_dir(&name).exists() {
            return Ok(0); // the VM was removed
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

fn print_lines(lines: &[u8], json: bool) -> Result<(), Error> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in lines.lines() {
        let line = line.map_err(|e| Error::local("reading the audit log", e))?;
        let shown = if json {
            line
        } else {
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => audit::human(&event),
                Err(_) => line,
            }
        };
        if writeln!(out, "{shown}").and_then(|()| out.flush()).is_err() {
            std::process::exit(0); // the reader left (`hutch audit | head`)
        }
    }
    Ok(())
}
