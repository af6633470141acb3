//! Which `hutch-agent` binary to upload: `--agent-binary`, or the first one
//! found for the guest's platform next to `hutch` or in the build tree, and a
//! check of its header (ELF or Mach-O, CPU) so a wrong binary fails here with
//! a clear message instead of `Exec format error` on the guest.

use std::path::{Path, PathBuf};

use super::error::InstallError;
use super::guest::{Arch, Os, Platform};

/// An agent binary that fits the guest.
#[derive(Debug)]
pub struct AgentBinary {
    /// Where it was found.
    pub path: PathBuf,
    /// Its bytes, as uploaded.
    pub bytes: Vec<u8>,
    /// A Linux binary that needs the guest's dynamic loader and libc.
    pub dynamic: bool,
}

/// `given`, or the first fitting binary among [`candidates`].
pub fn find(given: Option<&Path>, platform: Platform) -> Result<AgentBinary, InstallError> {
    if let Some(path) = given {
        return load(path, platform);
    }
    let candidates = candidates(platform);
    for path in &candidates {
        if path.is_file() {
            match load(path, platform) {
                Ok(binary) => return Ok(binary),
                Err(e) => tracing::debug!("skipping {}: {e}", path.display()),
            }
        }
    }
    let looked = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(InstallError::NoAgentBinary { platform: platform.to_string(), looked })
}

/// Where hutch looks, best first: a dist build next to `hutch`
/// (`hutch-agent-linux-x86_64`), the build tree's `dist/` and per-target
/// release builds (static ones from `cargo xtask image`/`dist`), then the
/// `hutch-agent` built beside `hutch`.
pub fn candidates(platform: Platform) -> Vec<PathBuf> {
    let Some(exe_dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) else {
        return Vec::new();
    };
    let named = format!("hutch-agent-{}", platform.slug());
    let mut out = vec![exe_dir.join(&named)];
    if let Some(target) = exe_dir.parent() {
        out.push(target.join("dist").join(&named));
        for triple in platform.triples() {
            out.push(target.join("dist").join(triple).join("hutch-agent"));
            out.push(target.join(triple).join("release").join("hutch-agent"));
        }
    }
    out.push(exe_dir.join("hutch-agent"));
    out
}

fn load(path: &Path, platform: Platform) -> Result<AgentBinary, InstallError> {
    let wrong = |why: String| InstallError::WrongBinary { path: path.to_path_buf(), why };
    let bytes = std::fs::read(path).map_err(|e| wrong(e.to_string()))?;
    let dynamic = check(&bytes, platform).map_err(wrong)?;
    Ok(AgentBinary { path: path.to_path_buf(), bytes, dynamic })
}

/// Checks that `bytes` is an executable for `platform`; returns whether it
/// is a dynamically linked Linux binary.
pub fn check(bytes: &[u8], platform: Platform) -> Result<bool, String> {
    match platform.os {
        Os::Linux => check_elf(bytes, platform.arch),
        Os::MacOs => check_macho(bytes, platform.arch).map(|()| false),
    }
}

fn check_elf(elf: &[u8], arch: Arch) -> Result<bool, String> {
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err("not an ELF executable (the guest runs Linux)".into());
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| elf.get(o..o + 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| elf.get(o..o + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
    let machine = u16_at(0x12);
    let want = match arch {
        Arch::X86_64 => EM_X86_64,
        Arch::Aarch64 => EM_AARCH64,
    };
    if machine != want {
        let have = match machine {
            EM_X86_64 => "x86_64".to_owned(),
            EM_AARCH64 => "aarch64".to_owned(),
            other => format!("machine {other}"),
        };
        return Err(format!("built for {have}, the guest is {}", arch.name()));
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36) as usize, u16_at(0x38) as usize);
    let dynamic = (0..phnum).any(|i| {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP)
    });
    Ok(dynamic)
}

fn check_macho(bin: &[u8], arch: Arch) -> Result<(), String> {
    const MH_MAGIC_64: [u8; 4] = [0xcf, 0xfa, 0xed, 0xfe];
    const FAT_MAGIC: [u8; 4] = [0xca, 0xfe, 0xba, 0xbe];
    const CPU_X86_64: u32 = 0x0100_0007;
    const CPU_ARM64: u32 = 0x0100_000c;
    let want = match arch {
        Arch::X86_64 => CPU_X86_64,
        Arch::Aarch64 => CPU_ARM64,
    };
    let head = bin.get(..8).ok_or("too short to be an executable")?;
    if head[..4] == MH_MAGIC_64 {
        let cpu = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if cpu == want { Ok(()) } else { Err(format!("a Mach-O for another CPU (type {cpu:#x}), the guest is {}", arch.name())) }
    } else if head[..4] == FAT_MAGIC {
        // Universal binary: big-endian count, then 20-byte entries starting with the CPU type.
        let count = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let has = (0..count.min(16))
            .any(|i| bin.get(8 + i * 20..12 + i * 20).is_some_and(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) == want));
        if has { Ok(()) } else { Err(format!("a universal binary without {}", arch.name())) }
    } else {
        Err("not a 64-bit Mach-O executable (the guest runs macOS)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16) -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        elf
    }

    #[test]
    fn elf_arch_must_match() {
        let linux_x86 = Platform { os: Os::Linux, arch: Arch::X86_64 };
        assert_eq!(check(&elf(62), linux_x86), Ok(false));
        assert!(check(&elf(183), linux_x86).expect_err("arm on x86").contains("aarch64"));
        assert!(check(b"#!/bin/sh\n", linux_x86).is_err());
        let mac = Platform { os: Os::MacOs, arch: Arch::Aarch64 };
        assert!(check(&elf(183), mac).is_err());
    }

    #[test]
    fn this_test_binary_is_recognised() {
        let exe = std::fs::read(std::env::current_exe().expect("exe")).expect("read exe");
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert!(check(&exe, Platform { os: Os::Linux, arch: Arch::X86_64 }).is_ok());
        }
    }

    #[test]
    fn macho_cpu_must_match() {
        let mut bin = vec![0xcf, 0xfa, 0xed, 0xfe];
        bin.extend_from_slice(&0x0100_000cu32.to_le_bytes());
        assert!(check(&bin, Platform { os: Os::MacOs, arch: Arch::Aarch64 }).is_ok());
        assert!(check(&bin, Platform { os: Os::MacOs, arch: Arch::X86_64 }).is_err());
    }
}
