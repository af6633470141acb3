//! `hutch sync-daemon --name NAME`: a synced VM's sync process, and
//! starting and stopping it.
//!
//! One per VM made with `--sync`, living as long as the VM: `up` and `run`
//! make the first copy (with a progress bar) and start it; `down` asks it to
//! flush both ways, then stops it, as do `rm` and `reset`. It is a
//! `crate::daemon` that claims its own lock (`sync/sync.log`, pid in
//! `sync/sync.pid`) and says `ready` in its log once the guest's watch is
//! armed. When its agent connection ends while the VM still runs (the agent
//! restarted), it connects again and compares everything once more.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::run::{self, CONTROL_SOCKET};
use super::{Engine, LiveError};
use crate::daemon::Daemon;
use crate::state::{StateDir, VmName, VmRecord};

/// The line it writes to its log once both directions run.
pub const READY: &str = "ready";
/// How long `up` waits for it to say it is ready.
const START_WAIT: Duration = Duration::from_secs(120);
/// How long it has to leave after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long `down` waits for the last flush.
const LAST_FLUSH: Duration = Duration::from_secs(20);

/// The sync's state folder of the VM whose folder is `vm_dir`.
pub fn sync_dir(vm_dir: &Path) -> PathBuf {
    vm_dir.join("sync")
}

/// The sync process of the VM whose folder is `vm_dir`.
pub fn daemon(vm_dir: &Path) -> Daemon {
    Daemon::new(&sync_dir(vm_dir), "sync")
}

/// The walk rules of a synced VM: its heavy dirs stay in the guest.
pub fn rules(record: &VmRecord) -> hutch_proto::v1::WalkRules {
    hutch_proto::v1::WalkRules { include_git: false, no_ignore: false, exclude_dirs: record.heavy_dirs.clone() }
}

/// The first copy into a fresh synced VM (with a progress bar), when host
/// and guest never agreed; nothing when they did.
pub async fn first_copy(state: &StateDir, record: &VmRecord) -> Result<(), LiveError> {
    let Some(root) = &record.workspace else { return Ok(()) };
    let dir = sync_dir(&state.vm_dir(&record.name));
    let mut engine = Engine::start(root, &rules(record), &dir, hutch_proto::watch::Method::native())?;
    if engine.has_base() {
        return Ok(());
    }
    let mut client = crate::connect::connect(state, record).await?;
    let source = crate::sync::Source { root: root.clone(), rules: rules(record) };
    let report = crate::sync::sync(&mut client, &source, true).await?;
    eprintln!("hutch: synced workspace: {}", report.line());
    engine.copied(report.tree);
    engine.save_base();
    Ok(())
}

/// Starts VM `name`'s sync process unless it runs, and waits until it is ready.
pub fn ensure(state: &StateDir, name: &VmName) -> Result<(), LiveError> {
    let vm_dir = state.vm_dir(name);
    let process = daemon(&vm_dir);
    if process.running() {
        return Ok(());
    }
    let local = |what: &str| {
        let what = what.to_owned();
        move |source| LiveError::Local { what, source }
    };
    std::fs::create_dir_all(sync_dir(&vm_dir)).map_err(local("creating the sync folder"))?;
    let exe = std::env::current_exe().map_err(local("finding the hutch executable"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["sync-daemon", "--name", name.as_str()]).env("HUTCH_STATE_DIR", state.root());
    let started = process.spawn_claiming(cmd).and_then(|spawned| spawned.wait_until(START_WAIT, |news| news.lines().any(|l| l == READY)));
    if let Err(e) = started {
        process.terminate(STOP_GRACE);
        return Err(LiveError::Daemon { name: name.to_string(), source: e });
    }
    Ok(())
}

/// Brings the guest's last changes to the host, then stops the sync process.
pub async fn stop(vm_dir: &Path) {
    let process = daemon(vm_dir);
    if !process.running() {
        return;
    }
    if run::flush(&sync_dir(vm_dir), LAST_FLUSH).await.is_none() {
        eprintln!("hutch: the synced workspace could not take the guest's last changes (see {})", process.log().display());
    }
    process.terminate(STOP_GRACE);
}

/// Stops the sync process at once (the VM is being deleted).
pub fn kill(vm_dir: &Path) {
    daemon(vm_dir).terminate(STOP_GRACE);
}

/// The sync process itself; returns when the VM is gone or it is told to stop.
pub async fn run(name: &VmName) -> Result<u8, LiveError> {
    let state = StateDir::from_env()?;
    let vm_dir = state.vm_dir(name);
    let dir = sync_dir(&vm_dir);
    let Some(_claim) =
        daemon(&vm_dir).claim().map_err(|source| LiveError::Local { what: "taking the sync process's lock".into(), source })?
    else {
        return Ok(0);
    };
    let record = state.load(name)?;
    let Some(root) = record.workspace.clone() else { return Ok(0) };
    let mut engine = Engine::start(&root, &rules(&record), &dir, hutch_proto::watch::Method::native())?;
    let mut control = run::serve_control(&dir.join(CONTROL_SOCKET))?;
    let mut stop = Box::pin(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        match &mut term {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    });
    let mut ready = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        let record = state.load(name)?;
        let outcome = async {
            let mut client = crate::connect::direct(&record).await?;
            let mut say_ready = || {
                if !ready {
                    // stdout is the log, where `up` waits for this line.
                    println!("{READY}");
                    ready = true;
                }
            };
            run::session(&mut client, &mut engine, &mut control, &mut stop, false, &mut say_ready).await
        }
        .await;
        match outcome {
            Ok(true) => return Ok(0),
            Ok(false) => eprintln!("hutch sync {}: the agent connection ended", std::process::id()),
            Err(e) => eprintln!("hutch sync {}: {e}", std::process::id()),
        }
        engine.save_base();
        if !vm_running(&state, &record) {
            eprintln!("hutch sync {}: the VM is not running; leaving", std::process::id());
            return Ok(0);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn vm_running(state: &StateDir, record: &VmRecord) -> bool {
    let Ok(backend) = crate::backend::for_kind(record.kind(), state) else { return false };
    matches!(backend.state(record, &state.vm_dir(&record.name)), Ok(crate::backend::VmState::Running))
}
