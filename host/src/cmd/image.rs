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

use std::time::{Duration, Instant};

use crate::agent_install::{self, Mode, Options, vm};
use crate::backend::{self, Backend, VmSpec, VmState};
use crate::cli::{ImageCommand, PrepareArgs, PrepareInit};
use crate::daemon::poll_until_async;
use crate::error::Error;
use crate::lifecycle;
use crate::state::{BackendKind, StateDir, StateError, VmLock, VmName, VmRecord, now_unix};

/// Pause between looks at a guest powering itself off.
const POWER_OFF_POLL: Duration = Duration::from_millis(500);
/// How long a guest may take to power itself off after the install (then it is stopped anyway).
const POWER_OFF_WITHIN: Duration = Duration::from_secs(60);

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

/// The name of the prepared image (or VM): `--name`, else BASE's.
pub(super) fn target_name(args: &PrepareArgs) -> Result<VmName, Error> {
    match &args.name {
        Some(name) => Ok(name.clone()),
        None => prepared_name(&args.base),
    }
}

/// The refusal of a name an existing VM has.
pub(super) fn name_taken(name: &VmName) -> Error {
    Error::Usage(format!("a VM named {name} exists already; pass --name for the prepared image, or remove the VM (`hutch rm -f {name}`)"))
}

/// The VM that prepares an image from `base`.
pub(super) fn preparing_vm(name: &VmName, base: &str) -> VmSpec {
    VmSpec {
        name: name.clone(),
        image: Some(base.to_owned()),
        cpus: 2,
        memory_mib: 2048,
        disk_bytes: None,
        workspace: None,
        ephemeral: false,
        heavy_dirs: Vec::new(),
        ro: None,
        unguarded_git: false,
        sync: false,
    }
}

/// QEMU: once the guest is off, its disk becomes the image
/// `$state/images/NAME`; the VM that made it is deleted either way (the
/// base image was never written). `powers_itself_off`: the guest was told
/// to shut down (over SSH) and is waited for; otherwise hutch powers it
/// off (the ACPI button, which hutch's init answers with a clean power-off).
pub(super) async fn finish_qemu(
    state: &StateDir,
    backend: &dyn Backend,
    record: &mut VmRecord,
    result: Result<String, Error>,
    powers_itself_off: bool,
) -> Result<u8, Error> {
    let name = record.name.clone();
    let dir = state.vm_dir(&name);
    if result.is_ok() && powers_itself_off {
        let powered_off = || async { (backend.state(record, &dir).ok() != Some(VmState::Running)).then_some(()) };
        poll_until_async(POWER_OFF_WITHIN, POWER_OFF_POLL, powered_off).await;
    }
    let stopped = lifecycle::stop(state, backend, record);
    let saved = match (&result, &stopped) {
        (Ok(_), Ok(())) => Some(crate::backend::qemu::Qemu::from_env(state).save_image(&dir, name.as_str())),
        _ => None,
    };
    let destroyed = lifecycle::destroy(state, backend, record);
    let version = result?;
    stopped?;
    let image = saved.expect("saved after a successful stop")?;
    destroyed?;
    println!(
        "image {name} ({version}) is ready in {}: `hutch run --image {name} -- CMD` boots a copy of it with the agent",
        image.display()
    );
    Ok(0)
}

/// Runs the user's setup hook (`hooks.setup` in the configuration), once, in
/// the image being prepared, through the agent just installed.
pub(super) async fn run_setup_hook(state: &StateDir, record: &VmRecord) -> Result<(), Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?;
    let config = crate::config::Config::load(&cwd)?;
    let Some(script) = config.setup_hook.value else { return Ok(()) };
    let script = crate::config::expand_home(&script);
    // The hook installs things: it gets the network the configuration
    // allows, and the distributions' package mirrors (this VM only).
    crate::net::daemon::ensure(state, &record.name, &crate::net::mirrors::with_mirrors(&config.network), None, true)?;
    Ok(crate::hooks::run_setup(state, record, &script).await?)
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

/// `BASE` made into a VM name, with `-hutch` appended.
fn prepared_name(base: &str) -> Result<VmName, Error> {
    // `ghcr.io/org/macos-base:latest` → `macos-base`.
    let last = base.rsplit('/').find(|part| !part.is_empty()).unwrap_or(base);
    let last = last.split(':').next().unwrap_or(last);
    let last = [".qcow2", ".img", ".raw"].iter().find_map(|ext| last.strip_suffix(ext)).unwrap_or(last);
    let mut name: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' }).collect();
    name = name.trim_start_matches(['-', '_']).chars().take(40).collect();
    if name.is_empty() {
        name = "image".into();
    }
    Ok(VmName::new(&format!("{name}-hutch"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_bases() {
        assert_eq!(prepared_name("ghcr.io/cirruslabs/macos-sequoia-base:latest").expect("name").as_str(), "macos-sequoia-base-hutch");
        assert_eq!(prepared_name("Ubuntu 24.04").expect("name").as_str(), "ubuntu-24-04-hutch");
        assert_eq!(prepared_name("///").expect("name").as_str(), "image-hutch");
        assert_eq!(prepared_name("./images/debian-12.qcow2").expect("name").as_str(), "debian-12-hutch");
        assert_eq!(prepared_name("/tmp/base.img").expect("name").as_str(), "base-hutch");
    }
}
