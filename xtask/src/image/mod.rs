//! `cargo xtask image`: a bootable guest for the QEMU backend, made from this
//! machine's own kernel and modules (Debian's linux-image-amd64), busybox
//! (busybox-static) and a static hutch-agent.
//!
//! Output: `target/hutch-image/{vmlinux, initramfs.cpio, image.json}`, then
//! installed as the default image in hutch's state folder, where `hutch up`
//! and `hutch run` find it.

mod cpio;
mod init;
mod kernel;
mod modules;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use hutch::backend::qemu::image::{IMAGE_FILE, ImageSpec};
use hutch::state::StateDir;

use crate::workspace::{Result, build_static, is_dynamic, target_dir};

/// Kernel command line: serial console, quiet, power off instead of reboot on
/// panic, no timer calibration check (slow under emulation).
const CMDLINE: &str = "console=ttyS0 quiet panic=-1 8250.nr_uarts=1 no_timer_check";

/// Builds the image; returns its folder. `install` also copies it into the
/// state folder as the default image.
pub fn run(install: bool) -> Result<PathBuf> {
    let agent = build_static_agent(&host_triple()?)?;
    let kver = newest_kernel()?;
    let kernel = PathBuf::from(format!("/boot/vmlinuz-{kver}"));
    std::fs::metadata(&kernel).map_err(|e| format!("{}: {e} (install linux-image-amd64)", kernel.display()))?;
    let busybox = Path::new("/bin/busybox");
    let busybox_bytes = std::fs::read(busybox).map_err(|e| format!("{}: {e} (install busybox-static)", busybox.display()))?;
    if is_dynamic(&busybox_bytes) {
        return Err("/bin/busybox is dynamically linked: install busybox-static".into());
    }
    let moddir = PathBuf::from(format!("/lib/modules/{kver}"));
    let modules = modules::resolve(&moddir, modules::WANTED)?;

    let mut archive = cpio::Archive::new();
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
        "etc",
        "lib",
        "lib/modules",
        "mnt",
        "newroot",
    ] {
        archive.dir(dir, 0o755);
    }
    archive.file("bin/busybox", 0o755, &busybox_bytes);
    for applet in applets()? {
        if applet != "busybox" {
            archive.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    archive.file("init", 0o755, init::INIT.as_bytes());
    archive.symlink("sbin/init", "../bin/busybox");
    archive.file("bin/hutch-agent", 0o755, &std::fs::read(&agent)?);
    archive.file("etc/inittab", 0o644, init::INITTAB.as_bytes());
    archive.file("etc/rc.hutch", 0o755, init::RC.as_bytes());
    archive.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    archive.file("etc/group", 0o644, b"root:x:0:\ntty:x:5:\n");
    let mut order = String::new();
    for module in &modules {
        archive.file(&format!("lib/modules/{}.ko", module.name), 0o644, &modules::read_plain(module)?);
        order.push_str(&module.name);
        order.push('\n');
    }
    archive.file("lib/modules/load-order", 0o644, order.as_bytes());
    let tools = tools::add(&mut archive)?;

    let out = target_dir().join("hutch-image");
    std::fs::create_dir_all(&out)?;
    archive.write_to(std::fs::File::create(out.join("initramfs.cpio"))?)?;
    std::fs::write(out.join("vmlinux"), kernel::extract_vmlinux(&kernel)?)?;
    let spec = ImageSpec {
        format: 1,
        kernel: "vmlinux".into(),
        initrd: "initramfs.cpio".into(),
        cmdline: CMDLINE.into(),
        agent_port: 8080,
        disk: None,
    };
    std::fs::write(out.join(IMAGE_FILE), serde_json::to_string_pretty(&spec)?)?;
    let names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    eprintln!("xtask: image in {} (kernel {kver}; modules {}; extra tools: {})", out.display(), names.join(" "), tools.join(" "));
    if install {
        let installed = install_default(&out)?;
        eprintln!("xtask: installed as the default image: {}", installed.display());
    }
    Ok(out)
}

/// Copies the image into the state folder as `images/default`, replacing the
/// previous one in a single rename.
fn install_default(image: &Path) -> Result<PathBuf> {
    let state = StateDir::from_env()?;
    let dest = state.default_image();
    let parent = dest.parent().ok_or("state folder has no parent")?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".default.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for file in [IMAGE_FILE, "vmlinux", "initramfs.cpio"] {
        std::fs::copy(image.join(file), staging.join(file))?;
    }
    hutch::state::replace_dir(&staging, &dest)?;
    Ok(dest)
}

/// Builds hutch-agent for `target_triple` statically linked (crt-static), for a guest
/// that has no libc of ours.
pub fn build_static_agent(target_triple: &str) -> Result<PathBuf> {
    build_static("hutch-agent", target_triple, "release")
}

/// The triple rustc builds for by default.
pub fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("host: ")).map(str::to_owned).ok_or_else(|| "rustc -vV printed no host triple".into())
}

/// The newest kernel with modules installed.
fn newest_kernel() -> Result<String> {
    let mut versions: Vec<String> = std::fs::read_dir("/lib/modules")
        .map_err(|e| format!("/lib/modules: {e} (install linux-image-amd64)"))?
        .flatten()
        .filter(|e| e.path().join("modules.dep").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    versions.sort_by_key(|v| version_key(v));
    versions.pop().ok_or_else(|| "no kernel modules in /lib/modules: install linux-image-amd64".into())
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
}

/// busybox's applet names.
fn applets() -> Result<Vec<String>> {
    let out = Command::new("/bin/busybox").arg("--list").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).filter(|a| !a.is_empty() && !a.contains('/')).collect())
}
