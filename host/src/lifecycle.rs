//! Bringing VMs up and down, the same way for every backend: create and
//! start a VM, wait for its agent, set up its workspace, copy a `--ro`
//! snapshot in, run the project's runtime hook once per fresh start; stop it
//! with its daemons; delete it.
//!
//! Callers hold the VM's lock (`state::VmLock`) around these functions, so two
//! `hutch up` for one name never race; different names never wait on each
//! other.

use std::path::Path;
use std::time::{Duration, Instant};

use hutch_proto::v1::InfoResponse;

use crate::backend::{Backend, BackendError, VmSpec, VmState};
use crate::connect::{self, ConnectError};
use crate::daemon::poll_until_async;
use crate::hooks::{self, HookError};
use crate::state::{BackendKind, RoMode, StateDir, StateError, VmName, VmRecord, now_unix};
use crate::sync::SyncError;
use crate::transport::CallError;
use crate::workspace::WorkspaceError;

/// Lines of console shown when a VM fails to boot.
const CONSOLE_LINES: usize = 30;
/// Pause between attempts to reach a booting agent.
const RETRY_EVERY: Duration = Duration::from_millis(20);
/// Time allowed for one attempt (connect + Info) once something answers.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for the guest to say it is ready before trying to
/// connect anyway (an image that never says so still works, just later).
const READY_SIGNAL_WAIT: Duration = Duration::from_secs(20);

/// Why a VM could not be brought up or down.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The state directory or the VM's record is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The VM manager failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A VM of that name exists with another backend.
    #[error("VM {name} exists with the {} backend; remove it first (`hutch rm -f {name}`) to recreate it with {}", has.as_str(), wanted.as_str())]
    OtherBackend {
        /// The VM.
        name: VmName,
        /// Its backend.
        has: BackendKind,
        /// The one asked for.
        wanted: BackendKind,
    },
    /// A VM of that name exists with the other workspace mode.
    #[error("VM {name} exists with {}, not {}; remove it first (`hutch rm -f {name}`) to recreate it", mode(*has), mode(*wanted))]
    OtherWorkspaceMode {
        /// The VM.
        name: VmName,
        /// Its mode: `--ro`'s, and whether it is synced.
        has: (Option<RoMode>, bool),
        /// The one asked for.
        wanted: (Option<RoMode>, bool),
    },
    /// The synced workspace could not start.
    #[error(transparent)]
    Live(#[from] crate::sync::live::LiveError),
    /// The VM did not come up.
    #[error("VM {name} did not boot: {why}")]
    Boot {
        /// The VM.
        name: VmName,
        /// What went wrong.
        why: BootFailure,
        /// The end of its console, when the backend has one.
        console: Option<String>,
    },
    /// Its agent cannot be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Its agent failed a call.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The workspace could not be set up in the guest.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The `--ro` snapshot could not be copied in.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The runtime hook failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The VM's network could not be set up.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// The project's `.git` could not be put under the host's guard.
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
}

/// How a VM failed to boot.
#[derive(Debug, thiserror::Error)]
pub enum BootFailure {
    /// Its processes went away.
    #[error("the VM stopped while booting")]
    Stopped,
    /// Its agent never answered.
    #[error("its agent did not answer within {0:?}")]
    AgentSilent(Duration),
}

fn mode((ro, sync): (Option<RoMode>, bool)) -> &'static str {
    match (ro, sync) {
        (Some(_), _) => "a --ro snapshot",
        (None, true) => "a synced workspace (--sync)",
        (None, false) => "a shared workspace",
    }
}

impl LifecycleError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            LifecycleError::State(e) => e.hint(),
            LifecycleError::Backend(e) => e.hint(),
            LifecycleError::OtherBackend { .. } | LifecycleError::OtherWorkspaceMode { .. } => None,
            LifecycleError::Boot { console, .. } => Some(match console {
                Some(console) => format!("the VM's last output:\n{console}"),
                None => "rerun with -v for details".into(),
            }),
            LifecycleError::Connect(e) => e.hint(),
            LifecycleError::Call(e) => Some(e.hint()),
            LifecycleError::Workspace(e) => e.hint(),
            LifecycleError::Sync(e) => e.hint(),
            LifecycleError::Hook(e) => e.hint(),
            LifecycleError::Net(e) => e.hint(),
            LifecycleError::Git(e) => e.hint(),
            LifecycleError::Live(e) => e.hint(),
        }
    }
}

/// How [`ensure_running`] found or left the VM.
pub enum Up {
    /// It was already running and answering: nothing was done.
    AlreadyUp(VmRecord),
    /// It was created and/or started, and its agent answered after this long.
    Started(VmRecord, Duration),
}

impl Up {
    /// The VM's record.
    pub fn record(&self) -> &VmRecord {
        match self {
            Up::AlreadyUp(record) | Up::Started(record, _) => record,
        }
    }

    /// Tells the user what happened (the backend's notes on stderr).
    pub fn announce(&self, backend: &dyn Backend) {
        match self {
            Up::AlreadyUp(record) => println!("{} is already up: {}", record.name, record.addr_text()),
            Up::Started(record, took) => {
                for note in backend.notes(record) {
                    eprintln!("hutch: {note}");
                }
                println!("{} is up in {:.1} s: {}", record.name, took.as_secs_f64(), record.addr_text());
            }
        }
    }
}

/// What `up` and `run` do: [`ensure_running`] (then `started`, to tell the
/// user), then give the guest the network `network` says (its network
/// process, `crate::net::daemon`: before anything runs in the guest, so the
/// hook has it), then bring a `--ro` snapshot up to date, then (in a fresh
/// VM only, after the sync: it runs in the project) run the project's
/// runtime hook, `runtime_hook` relative to the workspace.
pub async fn up(
    state: &StateDir,
    backend: &dyn Backend,
    spec: &VmSpec,
    network: &crate::config::NetworkConfig,
    runtime_hook: &str,
    started: impl FnOnce(&Up),
) -> Result<Up, LifecycleError> {
    let up = ensure_running(state, backend, spec).await?;
    started(&up);
    finish(state, &up, network, runtime_hook).await?;
    Ok(up)
}

/// What `up` and `run` do once the VM's agent answers: the network, a
/// `--ro` snapshot brought up to date, and in a VM just started the
/// runtime hook (see [`up`]).
async fn finish(state: &StateDir, up: &Up, network: &crate::config::NetworkConfig, runtime_hook: &str) -> Result<(), LifecycleError> {
    let record = up.record();
    let network = crate::net::daemon::begin(state, &record.name, network, record.workspace.as_deref(), matches!(up, Up::Started(..)))?;
    finish_started(state, up, network, runtime_hook).await
}

/// [`finish`] once the network process (if one had to start) is on its way.
async fn finish_started(
    state: &StateDir,
    up: &Up,
    network: Option<crate::net::daemon::Starting>,
    runtime_hook: &str,
) -> Result<(), LifecycleError> {
    let record = up.record();
    if let Some(network) = network {
        let begin = Instant::now();
        network.ready()?;
        tracing::debug!("{}: network ready after another {:?}", record.name, begin.elapsed());
    }
    crate::git::watch::ensure(state, &record.name)?;
    if record.ro.is_some() {
        let mut client = connect::connect(state, record).await?;
        if let Some(report) = crate::sync::refresh_snapshot(&mut client, record, true).await? {
            eprintln!("hutch: snapshot of the workspace: {}", report.line());
        }
    }
    if record.sync {
        crate::sync::live::daemon::first_copy(state, record).await?;
        crate::sync::live::daemon::ensure(state, &record.name)?;
    }
    if let (Up::Started(..), Some(workspace)) = (up, &record.workspace) {
        hooks::run_runtime(state, record, workspace, runtime_hook).await?;
    }
    Ok(())
}

/// Readies a VM a run took from a warm pool (`crate::warm`) exactly as
/// [`up`] readies one it has just booted: the VM booted and mounted the
/// project ahead of time, so what is left is what a cold boot would only
/// now decide. Its network process, which the keeper started when the VM
/// became ready (nobody has used its placeholders), is made to serve this
/// run's configuration and environment: kept when they are the same, given
/// the new policy and secrets' values in place when they differ, started
/// again when it died. Meanwhile the project is prepared again (the heavy
/// dirs its files imply now, the share checked); then [`finish_started`]
/// brings a `--ro` snapshot up to date and runs the runtime hook.
pub async fn resume_ready(
    state: &StateDir,
    backend: &dyn Backend,
    mut record: VmRecord,
    network: &crate::config::NetworkConfig,
    runtime_hook: &str,
) -> Result<(), LifecycleError> {
    let begin = Instant::now();
    let starting = crate::net::daemon::begin(state, &record.name, network, record.workspace.as_deref(), false)?;
    crate::workspace::prepare(state, backend, &mut record).await?;
    record.save(&state.vm_dir(&record.name))?;
    tracing::debug!("{}: project prepared in {:?}", record.name, begin.elapsed());
    finish_started(state, &Up::Started(record, begin.elapsed()), starting, runtime_hook).await
}

/// Creates the VM if needed, starts it if needed, waits for its agent and
/// sets up its workspace.
pub async fn ensure_running(state: &StateDir, backend: &dyn Backend, spec: &VmSpec) -> Result<Up, LifecycleError> {
    crate::git::guard::check_backend(backend.kind(), spec.shared_workspace(), spec.unguarded_git, &spec.heavy_dirs)?;
    let dir = state.create_vm_dir(&spec.name)?;
    let existing = match state.load(&spec.name) {
        Ok(record) => Some(record),
        Err(StateError::NoSuchVm(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut record = match existing {
        Some(record) if record.kind() != backend.kind() => {
            return Err(LifecycleError::OtherBackend { name: spec.name.clone(), has: record.kind(), wanted: backend.kind() });
        }
        Some(record) if record.ro != spec.ro || record.sync != spec.sync => {
            return Err(LifecycleError::OtherWorkspaceMode {
                name: spec.name.clone(),
                has: (record.ro, record.sync),
                wanted: (spec.ro, spec.sync),
            });
        }
        Some(record) => match backend.state(&record, &dir)? {
            VmState::Running if agent_info(state, &record).await.is_ok() => return Ok(Up::AlreadyUp(record)),
            VmState::Running => {
                // Up but not answering (half-booted, or the agent died): restart
                // it, and its multiplexer, whose agent connection is dead.
                let mut record = record;
                crate::mux::stop(&dir);
                crate::net::daemon::stop(&dir);
                crate::git::watch::stop(&dir);
                crate::sync::live::daemon::kill(&dir);
                backend.stop(&mut record, &dir)?;
                record
            }
            VmState::Stopped => record,
            // The VM manager says it has no such VM (deleted behind hutch's
            // back): make it again.
            VmState::Missing => create(backend, spec, &dir)?,
        },
        None => create(backend, spec, &dir)?,
    };
    let begin = Instant::now();
    record.unguarded_git = spec.unguarded_git;
    guard_git(backend.kind(), &mut record, &dir)?;
    if let Err(e) = backend.start(&mut record, &dir) {
        crate::workspace::remove_links(state, &mut record);
        let _ = record.save(&dir);
        return Err(e.into());
    }
    record.started_unix = Some(now_unix());
    record.save(&dir)?;
    let info = match wait_for_agent(backend, &mut record, &dir).await {
        Ok(info) => info,
        Err(e) => {
            let mut failed = record.clone();
            let _ = backend.stop(&mut failed, &dir);
            crate::workspace::remove_links(state, &mut failed);
            failed.started_unix = None;
            let _ = failed.save(&dir);
            return Err(e);
        }
    };
    backend.booted(&mut record, &dir);
    record.protocol = Some(info.protocol);
    record.save(&dir)?;
    if let Err(e) = crate::workspace::prepare(state, backend, &mut record).await {
        let mut failed = record.clone();
        let _ = stop(state, backend, &mut failed);
        return Err(e.into());
    }
    record.save(&dir)?;
    Ok(Up::Started(record, begin.elapsed()))
}

/// Puts the shared workspace's repositories under the host's guard for the
/// start to come (see `crate::git`): works out and saves the plan the QEMU
/// backend's file server is started with, and tells the user what they
/// should know about it. A VM without a shared workspace, started with
/// `--unguarded-git`, or of a backend that serves the share itself (let
/// through by `git::guard::check_backend`), has no plan.
fn guard_git(kind: BackendKind, record: &mut VmRecord, dir: &Path) -> Result<(), LifecycleError> {
    crate::git::take::reset(dir);
    let workspace = match record.shared_workspace() {
        Some(ws) if kind == BackendKind::Qemu && !record.unguarded_git => ws.to_path_buf(),
        _ => {
            crate::git::guard::Guard::remove(dir);
            return Ok(());
        }
    };
    crate::git::namespace::probe()?;
    let guard = crate::git::guard::plan(&workspace, dir, &record.heavy_dirs)?;
    record.created_dirs.extend(guard.created.iter().filter(|c| !record.created_dirs.contains(c)).cloned().collect::<Vec<_>>());
    record.save(dir)?;
    guard.save(dir)?;
    for note in &guard.notes {
        eprintln!("hutch: git: {note}");
    }
    Ok(())
}

fn create(backend: &dyn Backend, spec: &VmSpec, dir: &Path) -> Result<VmRecord, LifecycleError> {
    let record = backend.create(spec, dir)?;
    record.save(dir)?;
    Ok(record)
}

/// Waits until the VM's agent answers `Info`, failing fast if the VM dies.
async fn wait_for_agent(backend: &dyn Backend, record: &mut VmRecord, dir: &Path) -> Result<InfoResponse, LifecycleError> {
    loop {
        let begin = Instant::now();
        let timeout = backend.boot_timeout(record);
        let booting = &*record;
        let settled = poll_until_async(timeout, RETRY_EVERY, move || async move {
            if backend.ready_to_connect(booting, dir) || begin.elapsed() >= READY_SIGNAL_WAIT {
                match tokio::time::timeout(ATTEMPT_TIMEOUT, info_directly(booting)).await {
                    Ok(Ok(info)) => return Some(Ok(info)),
                    Ok(Err(e)) => tracing::trace!("agent not ready: {e}"),
                    Err(_) => tracing::trace!("agent attempt timed out"),
                }
            }
            match backend.state(booting, dir) {
                Ok(VmState::Running) => None,
                Ok(_) => Some(Err(boot_failed(backend, booting, dir, BootFailure::Stopped))),
                Err(e) => Some(Err(e.into())),
            }
        })
        .await;
        if let Some(settled) = settled {
            return settled;
        }
        if !backend.retry_boot(record, dir)? {
            return Err(boot_failed(backend, record, dir, BootFailure::AgentSilent(timeout)));
        }
        record.save(dir)?;
    }
}

fn boot_failed(backend: &dyn Backend, record: &VmRecord, dir: &Path, why: BootFailure) -> LifecycleError {
    LifecycleError::Boot { name: record.name.clone(), why, console: backend.console_tail(dir, CONSOLE_LINES) }
}

/// Asks the VM's agent for `Info` (see `crate::connect`), within the call
/// deadline.
pub async fn agent_info(state: &StateDir, record: &VmRecord) -> Result<InfoResponse, LifecycleError> {
    let client = connect::connect(state, record).await?;
    Ok(client.describe().await?)
}

/// Asks a booting VM's agent for `Info`, directly: no multiplexer yet, and
/// the boot loop watches the VM itself.
pub async fn info_directly(record: &VmRecord) -> Result<InfoResponse, LifecycleError> {
    let client = connect::direct(record).await?;
    Ok(client.describe().await?)
}

/// Tells each of the VM's helper daemons (forwarder, sync process,
/// multiplexer, network process, git watcher) to stop, without waiting:
/// told together, they exit in parallel.
fn tell_helpers(dir: &Path) {
    for helper in [
        crate::forward::detached::daemon(dir),
        crate::sync::live::daemon::daemon(dir),
        crate::mux::daemon(dir),
        crate::net::daemon::daemon(dir),
        crate::git::watch::daemon(dir),
    ] {
        helper.tell_to_stop();
    }
}

/// Waits for the VM's helper daemons to stop (told by [`tell_helpers`];
/// one that is still running gets its own SIGTERM, then SIGKILL); then
/// passes on what the git watcher noticed.
fn wait_helpers(dir: &Path) {
    crate::forward::detached::stop(dir);
    crate::sync::live::daemon::kill(dir);
    crate::mux::stop(dir);
    crate::net::daemon::stop(dir);
    crate::git::watch::stop(dir);
    crate::git::watch::tell_notices(dir);
}

/// Stops the VM if it runs, with its daemons, and records that it is stopped.
pub fn stop(state: &StateDir, backend: &dyn Backend, record: &mut VmRecord) -> Result<(), LifecycleError> {
    let dir = state.vm_dir(&record.name);
    tell_helpers(&dir);
    wait_helpers(&dir);
    backend.stop(record, &dir)?;
    crate::workspace::remove_links(state, record);
    record.started_unix = None;
    record.save(&dir)?;
    Ok(())
}

/// Stops and deletes the VM and removes its state folder.
pub fn destroy(state: &StateDir, backend: &dyn Backend, record: &VmRecord) -> Result<(), LifecycleError> {
    let dir = state.vm_dir(&record.name);
    // The helpers and the VM stop at the same time: nothing of it is kept.
    tell_helpers(&dir);
    let deleted = backend.delete(record, &dir);
    wait_helpers(&dir);
    deleted?;
    crate::workspace::remove_links(state, &mut record.clone());
    state.remove_vm_dir(&record.name)?;
    // A VM made again under this name is a new machine with new host keys.
    let known = crate::agent_install::known_hosts::KnownHosts::at(state.known_hosts());
    if let Err(e) = known.forget(&crate::agent_install::known_hosts::vm_entry(record.name.as_str())) {
        tracing::warn!("{e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::{FakeBackend, spec};
    use crate::state::{BackendState, QemuState, RoMode};

    /// A state dir holding a stopped VM `web` made by `backend`.
    fn existing(backend: BackendState, ro: Option<RoMode>) -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        let vm_dir = state.create_vm_dir(&VmName::new("web").unwrap()).unwrap();
        spec("web", ro).record("base".into(), None, backend).save(&vm_dir).unwrap();
        (dir, state)
    }

    fn qemu() -> BackendState {
        BackendState::Qemu(QemuState::default())
    }

    #[tokio::test]
    async fn a_vm_manager_that_cannot_tell_fails_up_and_creates_nothing() {
        let (_dir, state) = existing(qemu(), None);
        let fake = FakeBackend::new([Err("connection to the VM manager's daemon lost".to_owned())]);
        let err = ensure_running(&state, &fake, &spec("web", None)).await.err().expect("an error");
        assert!(matches!(&err, LifecycleError::Backend(BackendError::Command { why, .. }) if why.contains("daemon lost")), "{err}");
        assert_eq!(fake.calls(), ["state"]);
        assert!(state.load(&VmName::new("web").unwrap()).is_ok(), "the record must stay");
    }

    #[tokio::test]
    async fn a_missing_vm_is_made_again_and_one_that_dies_booting_is_stopped() {
        let (_dir, state) = existing(qemu(), None);
        // Missing before the start, then stopped while booting.
        let fake = FakeBackend::new([Ok(VmState::Missing), Ok(VmState::Stopped)]);
        let err = ensure_running(&state, &fake, &spec("web", None)).await.err().expect("an error");
        let LifecycleError::Boot { why: BootFailure::Stopped, console: Some(console), .. } = &err else { panic!("{err:?}") };
        assert!(console.contains("kernel panic"));
        assert!(err.to_string().contains("VM web did not boot: the VM stopped while booting"), "{err}");
        assert_eq!(fake.calls(), ["state", "create", "start", "state", "stop"]);
        let record = state.load(&VmName::new("web").unwrap()).unwrap();
        assert_eq!(record.started_unix, None, "a failed boot is recorded as stopped");
    }

    #[tokio::test]
    async fn an_agent_that_never_answers_times_out_after_the_backends_retry() {
        let (_dir, state) = existing(qemu(), None);
        let mut fake = FakeBackend::new([Ok(VmState::Stopped), Ok(VmState::Running)]);
        fake.boot_timeout = Duration::from_millis(50);
        *fake.retries.borrow_mut() = 1;
        let err = ensure_running(&state, &fake, &spec("web", None)).await.err().expect("an error");
        assert!(matches!(err, LifecycleError::Boot { why: BootFailure::AgentSilent(t), .. } if t == Duration::from_millis(50)), "{err}");
        let calls = fake.calls();
        assert_eq!(calls.iter().filter(|c| **c == "retry_boot").count(), 2, "{calls:?}");
        assert_eq!(calls.iter().filter(|c| **c == "start").count(), 1, "{calls:?}");
        assert_eq!(calls.last(), Some(&"stop"));
    }

    #[tokio::test]
    async fn a_vm_of_another_backend_or_mode_is_refused_untouched() {
        let (_dir, state) = existing(BackendState::Tart(Default::default()), None);
        let fake = FakeBackend::new([Ok(VmState::Stopped)]);
        let err = ensure_running(&state, &fake, &spec("web", None)).await.err().expect("an error");
        assert!(matches!(err, LifecycleError::OtherBackend { has: BackendKind::Tart, wanted: BackendKind::Qemu, .. }), "{err}");
        assert!(err.to_string().contains("exists with the tart backend"), "{err}");

        let (_dir, state) = existing(qemu(), Some(RoMode::default()));
        let err = ensure_running(&state, &fake, &spec("web", None)).await.err().expect("an error");
        assert!(err.to_string().contains("VM web exists with a --ro snapshot, not a shared workspace"), "{err}");
        let mut synced = spec("web", None);
        synced.sync = true;
        let err = ensure_running(&state, &fake, &synced).await.err().expect("an error");
        assert!(err.to_string().contains("not a synced workspace (--sync)"), "{err}");
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    }

    #[test]
    fn stop_and_destroy_go_through_the_backend() {
        let (_dir, state) = existing(qemu(), None);
        let name = VmName::new("web").unwrap();
        let fake = FakeBackend::new([Ok(VmState::Running)]);
        let mut record = state.load(&name).unwrap();
        record.started_unix = Some(1);
        stop(&state, &fake, &mut record).unwrap();
        assert_eq!(state.load(&name).unwrap().started_unix, None);
        destroy(&state, &fake, &record).unwrap();
        assert_eq!(fake.calls(), ["stop", "delete"]);
        assert!(!state.vm_dir(&name).exists());
    }
}
