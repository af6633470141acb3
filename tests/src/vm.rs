//! End-to-end fixtures: hutch driving real QEMU guests booted from the images
//! `cargo xtask e2e` builds (the minimal one by default, the Debian one where
//! a test needs it), with a private state folder per test process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::binaries;

/// A private hutch state folder and the guest image to boot.
pub struct E2e {
    /// HUTCH_STATE_DIR for every hutch this fixture runs.
    pub state: TempDir,
    /// The minimal guest image folder (busybox in RAM: boots fastest).
    pub image: PathBuf,
    /// The Debian image folder (`HUTCH_E2E_DEBIAN_IMAGE`), for tests that
    /// need a real userland.
    pub debian: PathBuf,
}

/// The fixture shared by one test process (one state folder, so the KVM
/// verdict is probed once).
pub fn e2e() -> &'static E2e {
    static E2E: OnceLock<E2e> = OnceLock::new();
    E2E.get_or_init(|| {
        let image = std::env::var_os("HUTCH_E2E_IMAGE")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hutch-image/minimal"));
        assert!(image.join("image.json").exists(), "no guest image at {}: run `cargo xtask e2e` (it builds one)", image.display());
        // Short path: Unix socket paths are limited to 107 bytes.
        let state = tempfile::Builder::new().prefix("he2e").tempdir_in("/tmp").expect("state dir");
        let debian = std::env::var_os("HUTCH_E2E_DEBIAN_IMAGE")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hutch-image/e2e-default"));
        E2e { state, image, debian }
    })
}

impl E2e {
    /// A hutch command using this fixture's state and image.
    pub fn hutch(&self) -> Command {
        let mut cmd = Command::new(&binaries().hutch);
        cmd.env("HUTCH_STATE_DIR", self.state.path())
            .env("HUTCH_IMAGE", &self.image)
            .env_remove("HUTCH_ADDR")
            .env_remove("HUTCH_BACKEND")
            .env_remove("HUTCH_LOG");
        cmd
    }

    /// The Debian image's folder; fails the test when `cargo xtask e2e` did not build it.
    pub fn debian(&self) -> &Path {
        assert!(self.debian.join("image.json").exists(), "no Debian image at {}: run `cargo xtask e2e`", self.debian.display());
        &self.debian
    }

    /// Runs hutch with `args`, stdin from /dev/null.
    pub fn run(&self, args: &[&str]) -> Output {
        self.hutch().args(args).stdin(Stdio::null()).output().expect("run hutch")
    }

    /// Pids of live processes whose command line mentions this fixture's state
    /// folder (QEMU, vhost-device-vsock).
    pub fn vm_processes(&self) -> Vec<(u32, String)> {
        let needle = self.state.path().to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let zombie = crate::pidfd::proc_state(pid as i32) == Some('Z');
            if cmdline.contains(&needle) && !zombie {
                found.push((pid, cmdline));
            }
        }
        found
    }
}
