//! `hutch log [NAME] [--follow] [--json]`: a VM's audit log, every egress
//! decision and every command run in it, oldest first.
//!
//! Following on a terminal, it also watches the VM's questions (`mode =
//! "ask"`): while it runs, a request no rule decides waits for an answer
//! (`hutch allow`/`deny` from any terminal), and its `ask` line shows it.

use std::io::{BufRead, IsTerminal, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::cli::LogArgs;
use crate::error::Error;
use crate::net::audit::{self, Event};
use crate::state::StateDir;
use crate::target::vm_name;

/// How often `--follow` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Runs `hutch log`; returns the exit code.
pub async fn run(args: LogArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let name = vm_name(&state, args.name.name())?;
    state.load(&name)?;
    let path = audit::path(&state.vm_dir(&name));
    let mut watching = (args.follow && std::io::stdout().is_terminal()).then(|| Watching::new(crate::net::net_dir(&state.vm_dir(&name))));
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
        if let Some(watching) = watching.as_mut() {
            watching.keep();
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// A watcher of the VM's questions, connected again whenever its network
/// process is (re)started.
struct Watching {
    net: std::path::PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watching {
    fn new(net: std::path::PathBuf) -> Watching {
        let mut watching = Watching { net, task: None };
        watching.keep();
        watching
    }

    /// Connects when not connected.
    fn keep(&mut self) {
        if self.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let net = self.net.clone();
        self.task = Some(tokio::spawn(async move {
            // The questions themselves are in the audit log: only be there.
            if let Ok((mut watcher, _)) = crate::net::control::Watcher::connect(&net).await {
                let asks = crate::net::policy::PolicyFile::load(&net).is_ok_and(|p| p.mode == crate::config::network::Mode::Ask);
                if asks {
                    eprintln!("hutch: while this runs, requests to hosts no rule covers wait for `hutch allow`/`hutch deny` (mode ask)");
                }
                while let Ok(Some(_)) = watcher.next().await {}
            }
        }));
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
            std::process::exit(0); // the reader left (`hutch log | head`)
        }
    }
    Ok(())
}
