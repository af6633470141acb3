//! `hutch image prepare BASE --init hutch`: a Debian or Ubuntu disk without
//! systemd or sshd (a `debootstrap`/`mmdebstrap` tree, a container's file
//! system on ext4) becomes an image that hutch's own init boots, as the
//! default image is booted: the agent of hutch's initramfs runs as PID 1 on
//! the disk's root, so nothing needs installing over SSH. hutch boots the
//! disk that way (QEMU only: hutch's kernel is what makes it possible), makes
//! it fit the init ([`FIT_SCRIPT`], through the agent), runs the setup hook,
//! powers the guest off and saves its disk as `$state/images/NAME` with
//! `"init": "hutch"`.

use std::path::Path;

use super::image_steps::{finish_qemu, name_taken, preparing_vm, run_setup_hook, target_name};
use crate::backend::qemu::Qemu;
use crate::backend::qemu::image::Init;
use crate::cli::PrepareArgs;
use crate::error::Error;
use crate::lifecycle;
use crate::state::{BackendKind, BackendState, QemuState, StateDir, StateError, VmLock};

/// What hutch's init expects of a disk, done through the agent as root:
/// the user `hutch` commands run as (its uid is replaced by the host user's
/// at each boot), with passwordless sudo where sudo is installed. Every
/// step is skipped when already so; missing tools are named.
pub const FIT_SCRIPT: &str = r#"set -eu
# hutch's init runs commands as the user `hutch`, giving it the host user's ids at boot.
if ! grep -q '^hutch:' /etc/passwd; then
  if ! command -v useradd >/dev/null 2>&1; then
    echo "hutch: this image has no useradd (Debian's and Ubuntu's passwd package) to create the user hutch" >&2
    exit 1
  fi
  shell=/bin/sh
  [ -x /bin/bash ] && shell=/bin/bash
  grep -q '^hutch:' /etc/group || groupadd hutch
  useradd --gid hutch --create-home --shell "$shell" --comment 'hutch guest user' hutch
  echo "hutch: created the user hutch"
fi
if [ -d /etc/sudoers.d ]; then
  printf 'hutch ALL=(ALL:ALL) NOPASSWD: ALL\n' > /etc/sudoers.d/hutch
  chmod 0440 /etc/sudoers.d/hutch
else
  echo "hutch: sudo is not installed: commands run as hutch cannot become root (install sudo in hooks.setup)" >&2
fi
command -v resize2fs >/dev/null 2>&1 || [ -x /sbin/resize2fs ] ||
  echo "hutch: resize2fs (e2fsprogs) is missing: a VM's root file system will not grow into a bigger --disk" >&2
"#;

/// Prepares `args.base` as an image booted by hutch's init; returns the exit code.
pub async fn prepare(state: &StateDir, args: &PrepareArgs) -> Result<u8, Error> {
    if args.backend != BackendKind::Qemu {
        return Err(Error::Usage(format!(
            "--init hutch boots a disk with hutch's own kernel and init, which the QEMU backend does and {} does not: \
             prepare a {} image with its own init and SSH (--init disk)",
            args.backend.as_str(),
            args.backend.as_str()
        )));
    }
    if Path::new(&args.base).is_dir() {
        return Err(Error::Usage(format!(
            "--init hutch takes a disk file (raw or qcow2, an ext4 root file system), not the folder {}",
            args.base
        )));
    }
    let qemu = Qemu::from_env(state);
    let name = target_name(args)?;
    let dir = state.create_vm_dir(&name)?;
    let _lock = VmLock::acquire(&dir)?;
    match state.load(&name) {
        Ok(_) => return Err(name_taken(&name)),
        Err(StateError::NoSuchVm(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let spec = preparing_vm(&name, &args.base);
    let mut record = match qemu.create_booting(&spec, &dir, Init::Hutch) {
        Ok(record) => record,
        Err(e) => {
            let _ = state.remove_vm_dir(&name);
            return Err(e.into());
        }
    };
    // Its set-up runs as root, as the SSH path's does.
    record.backend = BackendState::Qemu(QemuState { commands_as_root: true, ..QemuState::default() });
    record.save(&dir)?;
    let result = fit(state, &qemu, &spec).await;
    // The latest record (started, its addresses), whatever happened.
    let mut record = state.load(&name).unwrap_or(record);
    finish_qemu(state, &qemu, &mut record, result, false).await
}

/// Boots the VM, waits for hutch's init to start the agent, fits the disk
/// to the init and runs the setup hook; returns the agent's version.
async fn fit(state: &StateDir, qemu: &Qemu, spec: &crate::backend::VmSpec) -> Result<String, Error> {
    let up = lifecycle::ensure_running(state, qemu, spec).await?;
    let record = up.record().clone();
    let info = lifecycle::agent_info(state, &record).await?;
    crate::hooks::run_text(state, &record, Path::new("hutch's image set-up"), FIT_SCRIPT).await?;
    run_setup_hook(state, &record).await?;
    Ok(format!("hutch-agent {}", info.version))
}
