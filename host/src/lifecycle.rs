//! Bringing VMs up and down, the same way for every backend.
//!
//! Callers hold the VM's lock (`state::VmLock`) around these functions, so two
//! `hutch up` for one name never race; different names never wait on each
//! other.

use std::path::Path;
use std::time::{Duration, Instant};

use hutch_proto::v1::{InfoRequest, InfoResponse};

use crate::backend::{Backend, VmSpec, VmState};
use crate::error::Error;
use crate::state::{StateDir, VmRecord, now_unix};
use crate::transport::{self, BearerToken};

/// Lines of console shown when a VM fails to boot.
const CONSOLE_LINES: usize = 30;
/// Pause between attempts to reach a booting agent.
const RETRY_EVERY: Duration = Duration::from_millis(20);
/// Time allowed for one attempt (connect + Info) once something answers.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for the guest to say it is ready before trying to
/// connect anyway (an image that never says so still works, just later).
const READY_SIGNAL_WAIT: Duration = Duration::from_secs(20);

/// How `ensure_running` found or left the VM.
pub enum Up {
    /// It was already running and answering: nothing was done.
    AlreadyUp(VmRecord),
    /// It was created and/or started, and its agent answered after this long.
    Started(VmRecord, Duration),
}

/// Creates the VM if needed, starts it if needed, and waits for its agent.
pub async fn ensure_running(state: &StateDir, backend: &dyn Backend, spec: &VmSpec) -> Result<Up, Error> {
    let dir = state.create_vm_dir(&spec.name)?;
    let existing = match state.load(&spec.name) {
        Ok(record) => Some(record),
        Err(crate::state::StateError::NoSuchVm(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut record = match existing {
        Some(record) if record.kind() != backend.kind() => {
            return Err(Error::Usage(format!(
                "VM {} exists with the {} backend; remove it first (`hutch rm -f {}`) to recreate it with {}",
                spec.name,
                record.kind().as_str(),
                spec.name,
                backend.kind().as_str()
            )));
        }
        Some(record) if record.ro != spec.ro => {
            let mode = |ro: Option<crate::state::RoMode>| if ro.is_some() { "a --ro snapshot" } else { "a shared workspace" };
            return Err(Error::Usage(format!(
                "VM {} exists with {}, not {}; remove it first (`hutch rm -f {}`) to recreate it",
                spec.name,
                mode(record.ro),
                mode(spec.ro),
                spec.name
            )));
        }
        Some(record) => match backend.state(&record, &dir)? {
            VmState::Running if agent_info(&record).await.is_ok() => return Ok(Up::AlreadyUp(record)),
            VmState::Running => {
                // Up but not answering (half-booted, or the agent died): restart it.
                let mut record = record;
                backend.stop(&mut record, &dir)?;
                record
            }
            VmState::Stopped => record,
            VmState::Missing => create(backend, spec, &dir)?,
        },
        None => create(backend, spec, &dir)?,
    };
    let begin = Instant::now();
    backend.start(&mut record, &dir)?;
    record.started_unix = Some(now_unix());
    record.save(&dir)?;
    let info = match wait_for_agent(backend, &mut record, &dir).await {
        Ok(info) => info,
        Err(e) => {
            let mut failed = record.clone();
            let _ = backend.stop(&mut failed, &dir);
            failed.started_unix = None;
            let _ = failed.save(&dir);
            return Err(e);
        }
    };
    backend.booted(&mut record, &dir);
    record.protocol = Some(info.protocol);
    record.save(&dir)?;
    if let Err(e) = crate::workspace::prepare(backend, &mut record).await {
        let mut failed = record.clone();
        let _ = stop(state, backend, &mut failed);
        return Err(e);
    }
    record.save(&dir)?;
    Ok(Up::Started(record, begin.elapsed()))
}

fn create(backend: &dyn Backend, spec: &VmSpec, dir: &Path) -> Result<VmRecord, Error> {
    let record = backend.create(spec, dir)?;
    record.save(dir)?;
    Ok(record)
}

/// Waits until the VM's agent answers `Info`, failing fast if the VM dies.
async fn wait_for_agent(backend: &dyn Backend, record: &mut VmRecord, dir: &Path) -> Result<InfoResponse, Error> {
    let mut begin = Instant::now();
    let mut deadline = begin + backend.boot_timeout(record);
    loop {
        if backend.ready_to_connect(record, dir) || begin.elapsed() >= READY_SIGNAL_WAIT {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, agent_info(record)).await {
                Ok(Ok(info)) => return Ok(info),
                Ok(Err(e)) => tracing::trace!("agent not ready: {e}"),
                Err(_) => tracing::trace!("agent attempt timed out"),
            }
        }
        if backend.state(record, dir)? != VmState::Running {
            return Err(Error::Boot {
                name: record.name.to_string(),
                why: "the VM stopped while booting".into(),
                console: backend.console_tail(dir, CONSOLE_LINES),
            });
        }
        if Instant::now() >= deadline {
            if backend.retry_boot(record, dir)? {
                record.save(dir)?;
                begin = Instant::now();
                deadline = begin + backend.boot_timeout(record);
                continue;
            }
            let why = format!("its agent did not answer within {:?}", backend.boot_timeout(record));
            return Err(Error::Boot { name: record.name.to_string(), why, console: backend.console_tail(dir, CONSOLE_LINES) });
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Asks the VM's agent for `Info` over the address in its record.
pub async fn agent_info(record: &VmRecord) -> Result<InfoResponse, Error> {
    let addr = record.agent_addr()?;
    let token = match &record.token_file {
        Some(path) => BearerToken::from_file(path)?,
        None => BearerToken::default(),
    };
    let mut client = transport::connect(addr, token).await?;
    Ok(client.info(InfoRequest {}).await.map_err(Error::from_status)?.into_inner())
}

/// Stops the VM if it runs and records that it is stopped.
pub fn stop(state: &StateDir, backend: &dyn Backend, record: &mut VmRecord) -> Result<(), Error> {
    let name = record.name.clone();
    let dir = state.vm_dir(&name);
    crate::forward::detached::stop(record);
    crate::mux::lock::stop(&dir);
    backend.stop(record, &dir)?;
    crate::workspace::remove_links(record);
    record.started_unix = None;
    record.save(&dir)?;
    Ok(())
}

/// Stops and deletes the VM and removes its state folder.
pub fn destroy(state: &StateDir, backend: &dyn Backend, record: &VmRecord) -> Result<(), Error> {
    let name = record.name.clone();
    crate::forward::detached::stop(&mut record.clone());
    crate::mux::lock::stop(&state.vm_dir(&name));
    backend.delete(record, &state.vm_dir(&name))?;
    crate::workspace::remove_links(&mut record.clone());
    state.remove_vm_dir(&name)?;
    // A VM made again under this name is a new machine with new host keys.
    let known = crate::agent_install::known_hosts::KnownHosts::at(state.known_hosts());
    if let Err(e) = known.forget(&crate::agent_install::known_hosts::vm_entry(name.as_str())) {
        tracing::warn!("{e}");
    }
    Ok(())
}
