//! Locating and building the workspace's binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Result type of xtask steps: any error, shown to the user as is.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Builds `hutch` and `hutch-agent` in `profile` ("debug" or "release") and
/// returns their paths.
pub fn build_bins(profile: &str) -> Result<(PathBuf, PathBuf)> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(root()).args(["build", "--quiet", "-p", "hutch", "-p", "hutch-agent"]);
    if profile == "release" {
        cargo.arg("--release");
    }
    let status = cargo.status()?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})").into());
    }
    let dir = target_dir().join(profile);
    Ok((dir.join("hutch"), dir.join("hutch-agent")))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `<root>/target`), where
/// generated files such as the benchmarks' keys and trees go.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}
