//! `hutch audit [NAME] [--follow] [--json]`: the audit log, every egress
//! decision and every command run, oldest first: of the current project
//! (all its VMs, removed ones included), or of VM NAME (which may have
//! been removed: `run --rm` leaves its lines). `hutch log` is its old
//! name, kept hidden for one release (see [`deprecated_name`]).
//!
//! Following a running VM on a terminal, it also watches the VM's questions
//! (`mode = "ask"`): while it runs, a request no rule decides waits for an
//! answer (`hutch allow`/`deny` from any terminal), and its `ask` line
//! shows it.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::audit::{self, Event, store};
use crate::cli::AuditArgs;
use crate::error::Error;
use crate::state::{StateDir, StateError, VmName, default_name};
use crate::target::vm_name;
use crate::untrusted::text;

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

/// What to show: which files, whose lines.
struct Scope {
    /// The project's current file (rotated ones are read before it).
    file: PathBuf,
    /// Only this VM's lines (`None`: the whole project's).
    vm: Option<String>,
    /// The VM lines are not labelled for.
    own: String,
    /// A log from before logs were kept per project (`vms/NAME/audit.jsonl`).
    legacy: Option<PathBuf>,
    /// `--follow` ends when this folder is gone (the VM was removed).
    ends_with: Option<PathBuf>,
    /// The network folder of the VM whose questions `--follow` watches (a VM that exists).
    net: Option<PathBuf>,
}

/// Runs `hutch audit`; returns the exit code.
pub async fn run(args: AuditArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let scope = scope(&state, args.name.name())?;
    let mut out = Printer { json: args.json, vm: scope.vm.clone(), own: scope.own.clone() };
    if let Some(legacy) = &scope.legacy {
        read_whole(legacy, &mut out)?;
    }
    let files = store::files_oldest_first(&scope.file);
    let (older, current) = match files.split_last() {
        Some((current, older)) if *current == scope.file => (older, Some(current)),
        _ => (&files[..], None),
    };
    for file in older {
        read_whole(file, &mut out)?;
    }
    let mut tail = Tail::open(current.map(PathBuf::as_path).unwrap_or(&scope.file));
    tail.read_new(&mut out)?;
    if !args.follow {
        return Ok(0);
    }
    let mut watching = scope.net.clone().filter(|_| std::io::stdout().is_terminal()).map(Watching::new);
    loop {
        if scope.ends_with.as_ref().is_some_and(|dir| !dir.exists()) {
            return Ok(0);
        }
        if let Some(watching) = watching.as_mut() {
            watching.keep();
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
        tail.read_new(&mut out)?;
    }
}

/// Which lines `hutch audit [NAME]` means.
fn scope(state: &StateDir, name: Option<&VmName>) -> Result<Scope, Error> {
    if let Ok(vm) = vm_name(state, name)
        && let Ok(record) = state.load(&vm)
    {
        let dir = state.vm_dir(&vm);
        let legacy = Some(dir.join("audit.jsonl")).filter(|f| f.exists());
        return Ok(Scope {
            file: store::project_file(state, &record),
            vm: name.map(ToString::to_string),
            own: vm.to_string(),
            legacy,
            net: Some(crate::net::net_dir(&dir)),
            ends_with: name.is_some().then_some(dir),
        });
    }
    let removed = |vm: Option<String>, own: String, file: PathBuf| Scope { file, vm, own, legacy: None, ends_with: None, net: None };
    match name {
        // A VM that is gone: its project's file has its name, or some file has its lines.
        Some(name) => {
            let wanted = format!("\"vm\":\"{name}\"");
            let direct = store::file_for(state, name.as_str());
            let file = std::iter::once(direct)
                .chain(store::project_files(state))
                .find(|file| store::files_oldest_first(file).iter().any(|f| contains(f, &wanted)))
                .ok_or_else(|| StateError::NoSuchVm(name.to_string()))?;
            Ok(removed(Some(name.to_string()), name.to_string(), file))
        }
        // No VM here any more: the project of this folder (or the nearest above it) that has a log.
        None => {
            let cwd = std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?;
            let key = cwd.ancestors().map(default_name).find(|key| store::file_for(state, key.as_str()).exists());
            let key = key.ok_or_else(|| StateError::NoSuchVm(default_name(&cwd).to_string()))?;
            Ok(removed(None, key.to_string(), store::file_for(state, key.as_str())))
        }
    }
}

/// A watcher of the VM's questions, connected again whenever its network
/// process is (re)started: while one watches, `mode = "ask"` holds requests
/// for an answer instead of refusing them.
struct Watching {
    net: PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watching {
    fn new(net: PathBuf) -> Watching {
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

/// Whether `file` has `needle` somewhere (a quick look before parsing).
fn contains(file: &Path, needle: &str) -> bool {
    let Ok(file) = File::open(file) else { return false };
    BufReader::new(file).split(b'\n').map_while(Result::ok).any(|line| line.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

fn read_whole(file: &Path, out: &mut Printer) -> Result<(), Error> {
    let Ok(opened) = File::open(file) else { return Ok(()) };
    for line in BufReader::new(opened).split(b'\n') {
        out.line(&line.map_err(|e| Error::local("reading the audit log", e))?)?;
    }
    Ok(())
}

/// The current file, read as it grows and followed across rotations.
struct Tail {
    path: PathBuf,
    file: Option<BufReader<File>>,
    partial: Vec<u8>,
}

impl Tail {
    fn open(path: &Path) -> Tail {
        Tail { path: path.to_path_buf(), file: File::open(path).ok().map(BufReader::new), partial: Vec::new() }
    }

    /// Prints the complete lines written since the last call. When the file
    /// was rotated, the rest of the old one first, then the new one.
    fn read_new(&mut self, out: &mut Printer) -> Result<(), Error> {
        loop {
            if let Some(file) = &mut self.file {
                loop {
                    let read = file.read_until(b'\n', &mut self.partial).map_err(|e| Error::local("reading the audit log", e))?;
                    if read == 0 || !self.partial.ends_with(b"\n") {
                        break;
                    }
                    let line = std::mem::take(&mut self.partial);
                    out.line(&line[..line.len() - 1])?;
                }
            }
            let now = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
            let ours = self.file.as_ref().and_then(|f| f.get_ref().metadata().ok()).map(|m| (m.dev(), m.ino()));
            if now.is_none() || now == ours {
                return Ok(());
            }
            // Rotated (or created): what was ours is complete; go on with the new file.
            self.partial.clear();
            self.file = File::open(&self.path).ok().map(BufReader::new);
            if let Some(file) = &mut self.file {
                file.seek(SeekFrom::Start(0)).map_err(|e| Error::local("reading the audit log", e))?;
            }
        }
    }
}

/// Prints lines, the whole project's or one VM's, for people or as JSON.
struct Printer {
    json: bool,
    vm: Option<String>,
    own: String,
}

impl Printer {
    fn line(&mut self, line: &[u8]) -> Result<(), Error> {
        if line.is_empty() {
            return Ok(());
        }
        let parsed: Option<Value> = serde_json::from_slice(line).ok();
        let vm = parsed.as_ref().and_then(|v| v.get("vm")).and_then(Value::as_str).unwrap_or("");
        if self.vm.as_deref().is_some_and(|wanted| wanted != vm && !vm.is_empty()) {
            return Ok(());
        }
        let shown = match (&parsed, self.json) {
            (Some(value), true) => text::json_safe(&value.to_string()).into_owned(),
            (Some(value), false) => match serde_json::from_value::<Event>(value.clone()) {
                Ok(event) => audit::human::line(&event, &self.own),
                Err(_) => format!(
                    "{}  {}  (an entry this hutch cannot show; `hutch audit --json` prints it)",
                    text::shown(value.get("time").and_then(Value::as_str).unwrap_or("?")),
                    text::shown(value.get("event").and_then(Value::as_str).unwrap_or("?"))
                ),
            },
            (None, _) => format!("(an unreadable line: {})", text::shown_bytes(line)),
        };
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{shown}").and_then(|()| stdout.flush()).is_err() {
            std::process::exit(0); // the reader left (`hutch audit | head`)
        }
        Ok(())
    }
}
