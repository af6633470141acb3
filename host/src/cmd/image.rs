//! `hutch image prepare BASE`: boot a VM from a base image that lacks the
//! agent, install it over SSH, run the user's setup hook through it, and stop
//! the VM so its disk keeps both. Works with any backend whose guests run an
//! SSH server (`Backend::ssh_endpoint`). With QEMU, BASE is a disk file and
//! the result is an image folder (`$state/images/NAME`, see
//! `backend::qemu::saved_image`); with Tart, the stopped VM is the image.
//! `--init hutch` (QEMU) takes a disk without systemd or sshd instead: see
//! `super::prepare_init`.
//!
//! The setup hook installs things: besides the configuration's allow list
//! it reaches the distributions' package mirrors (`crate::net::mirrors`),
//! for this VM only.

use std::time::Instant;

use super::image_steps::{finish_qemu, name_taken, preparing_vm, run_setup_hook, target_name};
use crate::agent_install::{self, Mode, Options, vm};
use crate::backend::{self, Backend};
use crate::cli::{ImageCommand, PrepareArgs, PrepareInit};
use crate::error::Error;
use crate::lifecycle;
use crate::state::{BackendKind, StateDir, StateError, VmLock, VmRecord, now_unix};

/// Runs `hutch image …`; returns the exit code.
pub async fn run(command: ImageCommand) -> Result<u8, Error> {
    match command {
        ImageCommand::Prepare(args) => prepare(args).await,
    }
}

async fn prepare(args: PrepareArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    if args.init == PrepareInit::Hutch {
        return super::prepare_init::prepare(&state, &args).await;
    }
    let backend = backend::for_kind(args.backend, &state)?;
    let qemu = args.backend == BackendKind::Qemu;
    let name = target_name(&args)?;
    let dir = state.create_vm_dir(&name)?;
    let _lock = VmLock::acquire(&dir)?;
    let mut record = match state.load(&name) {
        // QEMU's VM is only a means to the image: never reuse someone's VM for it.
        Ok(_) if qemu => return Err(name_taken(&name)),
        Ok(record) => record,
        Err(StateError::NoSuchVm(_)) => {
            let spec = preparing_vm(&name, &args.base);
            let record = match backend.create(&spec, &dir) {
                Ok(record) => record,
                Err(e) => {
                    let _ = state.remove_vm_dir(&name);
                    return Err(e.into());
                }
            };
            record.save(&dir)?;
            record
        }
        Err(e) => return Err(e.into()),
    };
    let started = backend.start(&mut record, &dir);
    let result = match started {
        Ok(()) => {
            record.started_unix = Some(now_unix());
            record.save(&dir)?;
            install(&state, backend.as_ref(), &record, &args).await
        }
        Err(e) => Err(e.into()),
    };
    if qemu {
        return finish_qemu(&state, backend.as_ref(), &mut record, result, true).await;
    }
    // Stopped either way: on success the disk keeps the agent; on failure
    // nothing is left running behind the user's back.
    let stopped = lifecycle::stop(&state, backend.as_ref(), &mut record);
    // The install's failure says more than a failure to stop afterwards.
    let version = result?;
    stopped?;
    println!("{name} has {version} and is stopped: `hutch up --name {name}` boots it with the agent");
    Ok(0)
}

async fn install(state: &StateDir, backend: &dyn Backend, record: &VmRecord, args: &PrepareArgs) -> Result<String, Error> {
    let deadline = Instant::now() + backend.boot_timeout(record);
    let session = vm::log_in_while_booting(state, backend, record, &args.ssh.login(), deadline).await?;
    let options = Options { agent_binary: args.ssh.agent_binary.clone(), prefix: None, mode: Mode::Service };
    let installed = agent_install::install(&session, &options).await?;
    println!("{}", installed.summary());
    vm::answers_on_vm_transport(record).await?;
    run_setup_hook(state, record).await?;
    agent_install::sync_disks(&session).await?;
    if record.kind() == BackendKind::Qemu {
        // A clean power-off (file systems unmounted, journal closed) before
        // the disk becomes an image; QEMU exits with the guest (-no-reboot).
        agent_install::shut_down(&session, &installed.sudo).await?;
    }
    session.close().await;
    Ok(installed.version)
}
