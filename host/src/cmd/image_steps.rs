//! The steps both ways of preparing an image share (`hutch image prepare`
//! over SSH in `super::image`, and `--init hutch` in
//! `super::prepare_init`): naming the result, the preparing VM, the setup
//! hook, and saving a QEMU disk as an image.

use std::time::Duration;

use crate::backend::{Backend, VmSpec, VmState};
use crate::cli::PrepareArgs;
use crate::daemon::poll_until_async;
use crate::error::Error;
use crate::lifecycle;
use crate::state::{StateDir, VmName, VmRecord};

/// Pause between looks at a guest powering itself off.
const POWER_OFF_POLL: Duration = Duration::from_millis(500);
/// How long a guest may take to power itself off after the install (then it is stopped anyway).
const POWER_OFF_WITHIN: Duration = Duration::from_secs(60);

/// The name of the prepared image (or VM): `--name`, else BASE's.
pub fn target_name(args: &PrepareArgs) -> Result<VmName, Error> {
    match &args.name {
        Some(name) => Ok(name.clone()),
        None => prepared_name(&args.base),
    }
}

/// The refusal of a name an existing VM has.
pub fn name_taken(name: &VmName) -> Error {
    Error::Usage(format!("a VM named {name} exists already; pass --name for the prepared image, or remove the VM (`hutch rm -f {name}`)"))
}

/// The VM that prepares an image from `base`.
pub fn preparing_vm(name: &VmName, base: &str) -> VmSpec {
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
pub async fn finish_qemu(
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
    #[allow(clippy::expect_used, reason = "`saved` is Some whenever the install and the stop succeeded, which the two `?` above checked")]
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
pub async fn run_setup_hook(state: &StateDir, record: &VmRecord) -> Result<(), Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?;
    let config = crate::config::Config::load(&cwd)?;
    let Some(script) = config.setup_hook.value else { return Ok(()) };
    let script = crate::config::expand_home(&script);
    // The hook installs things: it gets the network the configuration
    // allows, and the distributions' package mirrors (this VM only).
    crate::net::daemon::ensure(state, &record.name, &crate::net::mirrors::with_mirrors(&config.network), None, true)?;
    Ok(crate::hooks::run_setup(state, record, &script).await?)
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
