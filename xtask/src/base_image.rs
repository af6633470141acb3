//! `cargo xtask base-image`: a small Debian disk image *without* hutch-agent,
//! with systemd and OpenSSH's sshd, the kind of base `hutch image prepare`
//! takes (and what its end-to-end test prepares).
//!
//! `debootstrap --variant=minbase` builds the root file system in a folder
//! (it needs root: run as root or with passwordless sudo), a few files
//! configure it (root password `hutch`, an authorized key, sshd allowing
//! root, a static address for QEMU's user-mode network), and `mke2fs -d`
//! makes the ext4 disk image from the folder without mounting anything.
//! No kernel or modules go in: hutch boots its own kernel, whose initramfs
//! loads the modules before handing over to the disk's systemd.
//!
//! Output, cached (rebuilt only when the recipe changes or the file is gone):
//! `target/hutch-base/debian.img` (raw, sparse), `id_ed25519` (its root key).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace::{Result, target_dir};

/// Bumped whenever what goes into the image changes, to rebuild the cache.
const RECIPE: &str = "debian bookworm minbase + systemd-sysv openssh-server udev; v1";
/// Debian release.
const SUITE: &str = "bookworm";
/// The disk's size (a sparse file: only used blocks take space).
const SIZE: &str = "2G";
/// The root password of the test image.
pub const ROOT_PASSWORD: &str = "hutch";

/// The built image and the private key that logs in as root.
pub struct BaseImage {
    /// The raw ext4 disk image.
    pub disk: PathBuf,
    /// An unencrypted ed25519 key authorized for root.
    pub key: PathBuf,
}

/// Builds the image unless a cached one from the same recipe exists.
pub fn run() -> Result<BaseImage> {
    let out = target_dir().join("hutch-base");
    let image = BaseImage { disk: out.join("debian.img"), key: out.join("id_ed25519") };
    let stamp = out.join("debian.img.recipe");
    if image.disk.is_file() && image.key.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == RECIPE) {
        eprintln!("xtask: base image {} is up to date", image.disk.display());
        return Ok(image);
    }
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&out)?;
    let _ = std::fs::remove_file(&stamp);
    let rootfs = out.join("rootfs");
    let sudo = sudo()?;
    if rootfs.exists() {
        as_root(&sudo, "rm", &["-rf".as_ref(), rootfs.as_os_str()])?;
    }
    let mirror = std::env::var("HUTCH_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    eprintln!("xtask: debootstrap {SUITE} into {} (a minute or two)", rootfs.display());
    let include = "--include=systemd-sysv,openssh-server,udev";
    as_root(&sudo, "debootstrap", &["--variant=minbase".as_ref(), include.as_ref(), SUITE.as_ref(), rootfs.as_os_str(), mirror.as_ref()])
        .map_err(|e| format!("{e} (install it with `apt-get install debootstrap`)"))?;
    if !image.key.is_file() {
        let status =
            Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "hutch-base", "-f"]).arg(&image.key).status()?;
        if !status.success() {
            return Err("ssh-keygen failed".into());
        }
    }
    configure(&sudo, &rootfs, &std::fs::read_to_string(image.key.with_extension("pub"))?)?;
    let tmp = out.join("debian.img.tmp");
    let _ = std::fs::remove_file(&tmp);
    eprintln!("xtask: mke2fs -d {} → {}", rootfs.display(), image.disk.display());
    let args = ["-q", "-F", "-t", "ext4", "-L", "hutch-root", "-d"];
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    all.extend([rootfs.as_os_str(), tmp.as_os_str(), SIZE.as_ref()]);
    as_root(&sudo, "mke2fs", &all)?;
    if !sudo.is_empty() {
        let me = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        as_root(&sudo, "chown", &[me.as_ref(), tmp.as_os_str()])?;
    }
    std::fs::rename(&tmp, &image.disk)?;
    as_root(&sudo, "rm", &["-rf".as_ref(), rootfs.as_os_str()])?;
    std::fs::write(&stamp, RECIPE)?;
    eprintln!(
        "xtask: base image {} built in {:.0?} (root password `{ROOT_PASSWORD}`, key {})",
        image.disk.display(),
        started.elapsed(),
        image.key.display()
    );
    Ok(image)
}

/// Root login for the test (password and key), sshd without DNS lookups, a
/// static address on QEMU's user-mode network, a host name.
fn configure(sudo: &[String], rootfs: &Path, public_key: &str) -> Result<()> {
    let files: &[(&str, u32, String)] = &[
        ("etc/hostname", 0o644, "hutch-debian\n".into()),
        ("etc/ssh/sshd_config.d/hutch-test.conf", 0o644, "PermitRootLogin yes\nPasswordAuthentication yes\nUseDNS no\n".into()),
        ("root/.ssh/authorized_keys", 0o600, public_key.to_owned()),
        (
            "etc/systemd/network/10-hutch.network",
            0o644,
            "[Match]\nName=e*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n".into(),
        ),
    ];
    for (path, mode, content) in files {
        let dest = rootfs.join(path);
        let script = format!("mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\" && chmod {mode:o} \"$1\"");
        as_root_with_stdin(sudo, "sh", &["-c".as_ref(), script.as_ref(), "sh".as_ref(), dest.as_os_str()], content.as_bytes())?;
    }
    as_root_with_stdin(sudo, "chroot", &[rootfs.as_os_str(), "chpasswd".as_ref()], format!("root:{ROOT_PASSWORD}\n").as_bytes())?;
    as_root(sudo, "chroot", &[rootfs.as_os_str(), "systemctl".as_ref(), "enable".as_ref(), "systemd-networkd".as_ref()])?;
    // Smaller image: the package cache and lists are not needed to boot.
    let clean = format!("rm -rf {0}/var/cache/apt/archives/*.deb {0}/var/lib/apt/lists/* {0}/var/log/*.log", rootfs.display());
    as_root(sudo, "sh", &["-c".as_ref(), clean.as_ref()])
}

/// `[]` as root, else `["sudo", "-n"]` when sudo works without a password.
fn sudo() -> Result<Vec<String>> {
    if nix::unistd::geteuid().is_root() {
        return Ok(Vec::new());
    }
    let ok = Command::new("sudo").args(["-n", "true"]).status().is_ok_and(|s| s.success());
    if ok {
        Ok(vec!["sudo".into(), "-n".into()])
    } else {
        Err("building the base image needs root (debootstrap, chroot): run as root or with passwordless sudo".into())
    }
}

fn as_root(sudo: &[String], program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    as_root_with_stdin(sudo, program, args, b"")
}

fn as_root_with_stdin(sudo: &[String], program: &str, args: &[&std::ffi::OsStr], stdin: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut cmd = match sudo.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(program);
            cmd
        }
        None => Command::new(program),
    };
    cmd.args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    let shown = format!("{program} {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin)?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("`{shown}` failed ({status})").into());
    }
    Ok(())
}
