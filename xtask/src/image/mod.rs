//! `cargo xtask image`: the guest images for the QEMU backend, made from this
//! machine's own kernel and modules (Debian's linux-image-amd64), busybox
//! (busybox-static) and a static hutch-agent. Two images share one kernel and
//! initramfs:
//!
//! - `default`: Debian 12 on a disk image ([`debian`]), booted by hutch's own
//!   init: what `hutch up` and `hutch run` use;
//! - `minimal`: busybox in RAM, the initramfs alone (`--image minimal`):
//!   boots fastest, for tests and scripts that need nothing else.
//!
//! Output: `target/hutch-image/{boot,minimal,default}/` (the disk cached in
//! `target/hutch-image/disks/`), installed as `images/default` and
//! `images/minimal` in hutch's state folder. Every step is a no-op when its
//! inputs did not change: the disk is reused by its recipe's key, and files
//! are only replaced when their bytes differ.

mod cpio;
pub mod debian;
mod init;
mod kernel;
mod modules;
pub mod node;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use hutch::backend::qemu::image::{DiskFormat, DiskSpec, IMAGE_FILE, ImageSpec, Init};
use hutch::state::StateDir;

use crate::workspace::{Result, build_static, is_dynamic, target_dir};

/// Kernel command line: serial console, quiet, power off instead of reboot on
/// panic, no timer calibration check (slow under emulation).
const CMDLINE: &str = "console=ttyS0 quiet panic=-1 8250.nr_uarts=1 no_timer_check";
/// The kernel and initramfs, by their names in every image folder.
const KERNEL: &str = "vmlinux";
const INITRD: &str = "initramfs.cpio";
/// The vsock port the agent listens on.
const AGENT_PORT: u32 = 8080;

/// What to build.
pub struct Options {
    /// Also install the images into hutch's state folder.
    pub install: bool,
    /// The Debian image, and the folder under `target/hutch-image` for it
    /// (`None`: the minimal image only).
    pub debian: Option<(&'static str, debian::Extras)>,
    /// Build the Debian disk again even if its recipe did not change (to pick
    /// up Debian's and npm's updates).
    pub rebuild: bool,
}

/// The image folders built.
pub struct Built {
    /// The busybox RAM image.
    pub minimal: PathBuf,
    /// The Debian disk image, when asked for.
    pub debian: Option<PathBuf>,
}

/// Builds the images; returns their folders.
pub fn run(options: &Options) -> Result<Built> {
    let out = target_dir().join("hutch-image");
    let boot = out.join("boot");
    build_boot(&boot)?;
    let minimal = out.join("minimal");
    let spec = ImageSpec {
        format: 1,
        kernel: KERNEL.into(),
        initrd: INITRD.into(),
        cmdline: CMDLINE.into(),
        agent_port: AGENT_PORT,
        disk: None,
        init: Init::Disk,
    };
    fill_folder(&minimal, &boot, &spec, None)?;
    let debian = match &options.debian {
        Some((folder, extras)) => {
            let disk = debian::disk(extras, options.rebuild)?;
            let file = disk.file_name().ok_or("disk without a name")?.to_string_lossy().into_owned();
            let spec = ImageSpec {
                cmdline: format!("{CMDLINE} hutch.root=auto hutch.init=agent"),
                disk: Some(DiskSpec { file, format: DiskFormat::Raw }),
                init: Init::Hutch,
                ..spec.clone()
            };
            let dir = out.join(folder);
            fill_folder(&dir, &boot, &spec, Some(&disk))?;
            Some(dir)
        }
        None => None,
    };
    if options.install {
        let state = StateDir::from_env()?;
        install(&minimal, &state.images_dir().join("minimal"))?;
        if let Some(dir) = &debian {
            install(dir, &state.default_image())?;
        } else if !state.default_image().join(IMAGE_FILE).exists() {
            install(&minimal, &state.default_image())?;
        }
    }
    Ok(Built { minimal, debian })
}

/// The kernel and initramfs every image boots, into `boot`.
fn build_boot(boot: &Path) -> Result<()> {
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

    std::fs::create_dir_all(boot)?;
    let mut initrd = Vec::new();
    archive.write_to(&mut initrd)?;
    write_if_changed(&boot.join(INITRD), &initrd)?;
    write_if_changed(&boot.join(KERNEL), &kernel::extract_vmlinux(&kernel)?)?;
    let names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    eprintln!("xtask: kernel {kver}; modules {}; extra tools: {}", names.join(" "), tools.join(" "));
    Ok(())
}

/// Writes `bytes` to `path` unless it already holds exactly them; a changed
/// file is replaced by a new one (rename), never rewritten in place: VMs and
/// installed images hold hard links to the old one.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Makes `dir` the image `spec`: the boot files and the disk hard-linked in,
/// `image.json` written, anything else removed.
fn fill_folder(dir: &Path, boot: &Path, spec: &ImageSpec, disk: Option<&Path>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in [KERNEL, INITRD] {
        link(&boot.join(name), &dir.join(name))?;
    }
    if let (Some(disk), Some(disk_spec)) = (disk, &spec.disk) {
        link(disk, &dir.join(&disk_spec.file))?;
    }
    write_if_changed(&dir.join(IMAGE_FILE), serde_json::to_string_pretty(spec)?.as_bytes())?;
    let wanted: Vec<&str> = [KERNEL, INITRD, IMAGE_FILE].into_iter().chain(spec.disk.as_ref().map(|d| d.file.as_str())).collect();
    for entry in std::fs::read_dir(dir)?.flatten() {
        if !wanted.iter().any(|w| entry.file_name() == *w) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Makes `to` the same file as `from`: kept when it already is, else a hard
/// link, else a copy (sparse, for disks on another file system).
fn link(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    if let (Ok(a), Ok(b)) = (from.metadata(), to.metadata())
        && same(&a, &b)
    {
        return Ok(());
    }
    let tmp = to.with_extension(format!("link-tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        let status = Command::new("cp").arg("--sparse=always").arg(from).arg(&tmp).status()?;
        if !status.success() {
            return Err(format!("copying {} to {} failed", from.display(), tmp.display()).into());
        }
    }
    std::fs::rename(&tmp, to)?;
    Ok(())
}

/// Installs the image folder `image` at `dest` (replaced in a single rename:
/// VMs made from the old one keep their hard links to it), unless `dest`
/// already holds the same files.
fn install(image: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let files: Vec<std::ffi::OsString> = std::fs::read_dir(image)?.flatten().map(|e| e.file_name()).collect();
    let same_file = |name: &std::ffi::OsString| {
        let (a, b) = (image.join(name), dest.join(name));
        match (a.metadata(), b.metadata()) {
            (Ok(m), Ok(n)) if m.dev() == n.dev() && m.ino() == n.ino() => true,
            (Ok(m), Ok(n)) if m.len() == n.len() && m.len() < 1 << 30 => std::fs::read(&a).ok() == std::fs::read(&b).ok(),
            _ => false,
        }
    };
    let installed = std::fs::read_dir(dest).map(|d| d.flatten().count()).unwrap_or(0);
    if installed == files.len() && files.iter().all(same_file) {
        eprintln!("xtask: {} is up to date", dest.display());
        return Ok(());
    }
    let parent = dest.parent().ok_or("state folder has no parent")?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".install.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for name in &files {
        link(&image.join(name), &staging.join(name))?;
    }
    hutch::state::replace_dir(&staging, dest)?;
    eprintln!("xtask: installed {}", dest.display());
    Ok(())
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
