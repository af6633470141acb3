//! Kernel modules for the guest: the named ones plus their dependencies, in
//! load order, read from the running distribution's `modules.dep`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace::Result;

/// Modules the guest needs: virtio over PCI, vsock over virtio, the workspace
/// over virtio-fs (with fuse) or 9p over virtio; for disk images also the disk
/// (virtio-blk, ext4 with its crc32c), the network (virtio-net), and the ACPI
/// power button with the event device hutch's init reads it from (a clean
/// shutdown when the host asks).
pub const WANTED: &[&str] = &[
    "virtio_pci",
    "vmw_vsock_virtio_transport",
    "virtiofs",
    "9pnet_virtio",
    "9p",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "virtio_net",
    // The host's entropy for the guest's RNG (QEMU's virtio-rng-pci).
    "virtio_rng",
    "button",
    "evdev",
];

/// One module to pack.
pub struct Module {
    /// Its name (`9pnet_virtio`).
    pub name: String,
    /// Its file under /lib/modules/VERSION.
    pub path: PathBuf,
}

/// Resolves `wanted` and their dependencies, dependencies first. Modules that
/// are built into the kernel are skipped.
pub fn resolve(moddir: &Path, wanted: &[&str]) -> Result<Vec<Module>> {
    let dep = std::fs::read_to_string(moddir.join("modules.dep")).map_err(|e| format!("{}/modules.dep: {e}", moddir.display()))?;
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let mut paths = HashMap::new();
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for line in dep.lines() {
        let Some((path, rest)) = line.split_once(':') else { continue };
        let name = module_name(path);
        paths.insert(name.clone(), PathBuf::from(path));
        deps.insert(name, rest.split_whitespace().map(module_name).collect());
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for want in wanted {
        let want = want.replace('-', "_");
        if paths.contains_key(&want) {
            visit(&want, &deps, &mut seen, &mut order);
        } else if !builtin.lines().any(|l| module_name(l) == want) {
            return Err(format!("kernel module {want} not found in {}", moddir.display()).into());
        }
    }
    Ok(order.into_iter().map(|name| Module { path: moddir.join(&paths[&name]), name }).collect())
}

fn visit(name: &str, deps: &HashMap<String, Vec<String>>, seen: &mut HashSet<String>, order: &mut Vec<String>) {
    if !seen.insert(name.to_owned()) {
        return;
    }
    for dep in deps.get(name).into_iter().flatten() {
        visit(dep, deps, seen, order);
    }
    order.push(name.to_owned());
}

/// `kernel/net/9p/9pnet_virtio.ko.xz` → `9pnet_virtio`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// The module's bytes, decompressed (busybox insmod reads plain .ko only).
pub fn read_plain(module: &Module) -> Result<Vec<u8>> {
    let path = &module.path;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tool = match ext {
        "ko" => return Ok(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?),
        "xz" => "xz",
        "zst" => "zstd",
        "gz" => "gzip",
        other => return Err(format!("{}: unknown module compression .{other}", path.display()).into()),
    };
    let out = Command::new(tool).arg("-dc").arg(path).output().map_err(|e| format!("{tool} (to decompress {}): {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!("{tool} -dc {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_and_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("modules.dep"),
            "kernel/a.ko: kernel/b.ko.xz kernel/c.ko\nkernel/b.ko.xz: kernel/c.ko\nkernel/c.ko:\nkernel/d.ko: kernel/c.ko\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("modules.builtin"), "kernel/e.ko\n").unwrap();
        let names: Vec<String> = resolve(dir.path(), &["a", "d", "e"]).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["c", "b", "a", "d"]);
        assert!(resolve(dir.path(), &["nope"]).is_err());
    }
}
