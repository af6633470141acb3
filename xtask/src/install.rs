//! `cargo xtask install [--root DIR]`: the `hutch` CLI into `DIR/bin`
//! (default: cargo's own, `~/.cargo/bin`), built the way it is measured.
//!
//! On Linux with glibc the CLI is linked statically: `hutch exec` is a process
//! scripts start many times a minute, and loading libc, libm and libgcc_s
//! costs it about 0.5 ms per call on the machine of the benchmarks (a third
//! of the start-up); full LTO (the `dist` profile) saves about 0.25 ms more.
//! Elsewhere this is `cargo install --path host`.
//!
//! A static glibc still loads NSS modules for host names other than IP
//! addresses and `localhost`-style entries of /etc/hosts; they come from the
//! same glibc when hutch is built on the machine that runs it, as here.

use std::path::{Path, PathBuf};

use crate::image::host_triple;
use crate::workspace::{Result, build_static};

/// Whether this host gets the static build.
pub const STATIC_HOST: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Installs the CLI; returns the exit code.
pub fn run(root_dir: Option<&Path>) -> Result<u8> {
    if !STATIC_HOST {
        let mut install = crate::workspace::cargo();
        install.args(["install", "--locked", "--path", "host"]);
        if let Some(dir) = root_dir {
            install.arg("--root").arg(dir);
        }
        return Ok(if install.status()?.success() { 0 } else { 1 });
    }
    let built = build_host_cli()?;
    let bin = install_root(root_dir)?.join("bin");
    std::fs::create_dir_all(&bin)?;
    // Write beside, then rename: a running `hutch` keeps its old file.
    let staging = bin.join(".hutch.new");
    std::fs::copy(&built, &staging)?;
    let dest = bin.join("hutch");
    std::fs::rename(&staging, &dest)?;
    eprintln!("xtask: installed {} (statically linked)", dest.display());
    Ok(0)
}

/// Builds the CLI as `install` would install it: static on Linux/glibc, in
/// the `dist` profile (full LTO, see the workspace's Cargo.toml), else the
/// normal release build.
pub fn build_host_cli() -> Result<PathBuf> {
    if STATIC_HOST {
        return build_static("hutch", &host_triple()?, "dist");
    }
    let (hutch, _) = crate::workspace::build_bins("release")?;
    Ok(hutch)
}

/// `--root`, else `$CARGO_INSTALL_ROOT`, else `$CARGO_HOME`, else `~/.cargo`.
fn install_root(root_dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = root_dir {
        return Ok(dir.to_path_buf());
    }
    for var in ["CARGO_INSTALL_ROOT", "CARGO_HOME"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set: pass --root DIR")?;
    Ok(PathBuf::from(home).join(".cargo"))
}
