//! `cargo xtask e2e`: build the guest images (the minimal one, the Debian
//! default with the suite's own extras, and the two Debian base images that
//! `hutch image prepare` is tested with, with systemd and sshd and without;
//! the Debian ones cached by their recipes) and
//! run the end-to-end suites (tests/tests/e2e_qemu.rs, e2e_workspace.rs and e2e_sync.rs on
//! the minimal image, e2e_debian.rs on the Debian one) against real QEMU
//! guests, one at a time.

use crate::workspace::Result;
use crate::{base_image, image};

/// Runs the suite (only the tests matching `filters`, when some are
/// given); returns its exit code.
pub fn run(filters: &[String]) -> Result<u8> {
    check_tool("qemu-system-x86_64", "apt-get install qemu-system-x86")?;
    let kernel_vsock = std::path::Path::new("/dev/vhost-vsock").exists();
    if !kernel_vsock {
        check_tool("vhost-device-vsock", "cargo install vhost-device-vsock --locked")?;
    }
    // The workspace suites check the share is virtio-fs (and, hiding it, 9p).
    check_tool("virtiofsd", "cargo install virtiofsd --locked")?;
    // Its own recipe (not the user's configuration), in its own folder.
    let options = image::Options { install: false, debian: Some(("e2e-default", image::debian::Extras::e2e())), rebuild: false };
    let images = image::run(&options)?;
    let debian = images.debian.ok_or("no Debian image was built")?;
    let base = base_image::run()?;
    let plain = base_image::plain()?;
    // Every suite runs even when an earlier one fails: a failure in one must
    // not hide the state of the others.
    let status = crate::workspace::cargo()
        .args([
            "test",
            "--no-fail-fast",
            "-p",
            "hutch-tests",
            "--test",
            "e2e_qemu",
            "--test",
            "e2e_workspace",
            "--test",
            "e2e_debian",
            "--test",
            "e2e_sync",
            "--",
            "--ignored",
            "--test-threads=1",
        ])
        .args(filters)
        .env("HUTCH_E2E_IMAGE", &images.minimal)
        .env("HUTCH_E2E_DEBIAN_IMAGE", &debian)
        .env("HUTCH_E2E_BASE", &base.disk)
        .env("HUTCH_E2E_BASE_KEY", &base.key)
        .env("HUTCH_E2E_BASE_PASSWORD", base_image::ROOT_PASSWORD)
        .env("HUTCH_E2E_PLAIN_BASE", &plain)
        .status()?;
    Ok(status.code().map_or(1, |c| c as u8))
}

fn check_tool(name: &str, install: &str) -> Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    if found { Ok(()) } else { Err(format!("{name} is not in PATH: install it with `{install}`").into()) }
}
