//! Locating and building the workspace's binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Result type of xtask steps: any error, shown to the user as is.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The workspace root (the parent of xtask/).
#[allow(clippy::expect_used, reason = "xtask's manifest folder is always inside the workspace")]
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// A `cargo` command in the workspace root, without the variables `cargo
/// run` gave xtask itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …; see
/// [`hutch_tests::without_package_env`]): a build script that watches one
/// (ring's `rerun-if-env-changed`) would see it differ from a plain `cargo
/// build` and rebuild every time.
pub fn cargo() -> Command {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(root());
    hutch_tests::without_package_env(&mut cargo);
    cargo
}

/// Builds `hutch` and `hutch-agent` in `profile` ("debug" or "release") and
/// returns their paths.
pub fn build_bins(profile: &str) -> Result<(PathBuf, PathBuf)> {
    let mut cargo = cargo();
    cargo.args(["build", "--quiet", "-p", "hutch", "-p", "hutch-agent"]);
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

/// Builds `package`'s binary for `target_triple` statically linked
/// (crt-static) in cargo profile `profile` ("release", or "dist" for the
/// installed CLI) and returns its path. The explicit `--target` keeps
/// RUSTFLAGS away from the host's own build artifacts (build scripts, proc
/// macros), so the normal build is not invalidated.
pub fn build_static(package: &str, target_triple: &str, profile: &str) -> Result<PathBuf> {
    let status = cargo()
        .args(["build", "--profile", profile, "-p", package, "--target", target_triple])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()?;
    if !status.success() {
        return Err(format!("building the static {package} failed").into());
    }
    let binary = target_dir().join(target_triple).join(profile).join(package);
    if is_dynamic(&std::fs::read(&binary)?) {
        return Err(format!("{} is not statically linked", binary.display()).into());
    }
    Ok(binary)
}

/// An ELF with a program interpreter (PT_INTERP) needs a dynamic loader.
pub fn is_dynamic(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return true; // not a 64-bit ELF: treat as unusable
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap_or_default()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP)
    })
}
