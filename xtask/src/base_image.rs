//! `cargo xtask base-image`: a small Debian disk image *without* hutch-agent,
//! with systemd and OpenSSH's sshd, the kind of base `hutch image prepare`
//! takes (and what its end-to-end test prepares).
//!
//! The same builder as the default image ([`crate::rootfs`]: mmdebstrap,
//! without root where the machine allows, then `mke2fs -d`), with a script
//! that configures it: root password `hutch`, an authorized key, sshd allowing
//! root, a static address for QEMU's user-mode network. No kernel or modules
//! go in: hutch boots its own kernel, whose initramfs loads the modules before
//! handing over to the disk's systemd.
//!
//! Output, cached (rebuilt only when the recipe changes or the file is gone):
//! `target/hutch-base/debian.img` (raw, sparse), `id_ed25519` (its root key).
//!
//! [`plain`] is the other kind of base: Debian `minbase` and nothing else
//! (no systemd, no sshd, no users, no apt lists), as a container's file
//! system or a `debootstrap` tree is, which `hutch image prepare --init
//! hutch` makes an image booted by hutch's own init:
//! `target/hutch-base/debian-plain.img`.

use std::path::PathBuf;
use std::process::Command;

use crate::rootfs::{BUILD_DIR, Recipe};
use crate::workspace::{Result, target_dir};

/// Debian release.
const SUITE: &str = "bookworm";
/// The disk's size (a sparse file: only used blocks take space).
const SIZE: u64 = 2 << 30;
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
    std::fs::create_dir_all(&out)?;
    let image = BaseImage { disk: out.join("debian.img"), key: out.join("id_ed25519") };
    if !image.key.is_file() {
        let status =
            Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "hutch-base", "-f"]).arg(&image.key).status()?;
        if !status.success() {
            return Err("ssh-keygen failed".into());
        }
    }
    let recipe = recipe(std::fs::read(image.key.with_extension("pub"))?);
    if cached_or_built(&recipe, &image.disk)? {
        eprintln!("xtask: (root password `{ROOT_PASSWORD}`, key {})", image.key.display());
    }
    Ok(image)
}

/// The plain base (see the module's text), unless a cached one from the
/// same recipe exists. Returns its path.
pub fn plain() -> Result<PathBuf> {
    let out = target_dir().join("hutch-base");
    std::fs::create_dir_all(&out)?;
    let disk = out.join("debian-plain.img");
    let recipe = Recipe {
        suite: SUITE.into(),
        variant: "minbase".into(),
        include: Vec::new(),
        updates: false,
        setup_files: Vec::new(),
        files: Vec::new(),
        build_files: Vec::new(),
        script: "echo hutch-plain > /etc/hostname\nrm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /var/log/*.log\n".into(),
        size: SIZE,
        label: "plain-root".into(),
    };
    cached_or_built(&recipe, &disk)?;
    Ok(disk)
}

/// Builds `recipe` into `disk` unless the disk was built from it already
/// (its key in `DISK.recipe` beside it); returns whether it built.
fn cached_or_built(recipe: &Recipe, disk: &std::path::Path) -> Result<bool> {
    let stamp = disk.with_extension("img.recipe");
    if disk.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == recipe.key()) {
        eprintln!("xtask: base image {} is up to date", disk.display());
        return Ok(false);
    }
    let started = std::time::Instant::now();
    let _ = std::fs::remove_file(&stamp);
    crate::rootfs::build(recipe, disk)?;
    std::fs::write(&stamp, recipe.key())?;
    eprintln!("xtask: base image {} built in {:.0?}", disk.display(), started.elapsed());
    Ok(true)
}

/// systemd, udev and sshd; root login for the test (password and key), sshd
/// without DNS lookups, a static address on QEMU's user-mode network, a host
/// name.
fn recipe(public_key: Vec<u8>) -> Recipe {
    let script = format!(
        r#"B={BUILD_DIR}
echo hutch-debian > /etc/hostname
mkdir -p /etc/ssh/sshd_config.d /root/.ssh /etc/systemd/network
printf 'PermitRootLogin yes\nPasswordAuthentication yes\nUseDNS no\n' > /etc/ssh/sshd_config.d/hutch-test.conf
cp $B/authorized_keys /root/.ssh/authorized_keys
chmod 0700 /root/.ssh
chmod 0600 /root/.ssh/authorized_keys
printf '[Match]\nName=e*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n' > /etc/systemd/network/10-hutch.network
echo 'root:{ROOT_PASSWORD}' | chpasswd
systemctl enable systemd-networkd
# Smaller image: the package cache and lists are not needed to boot.
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /var/log/*.log
"#
    );
    Recipe {
        suite: SUITE.into(),
        variant: "minbase".into(),
        include: ["systemd-sysv", "openssh-server", "udev"].map(String::from).to_vec(),
        updates: false,
        setup_files: Vec::new(),
        files: vec![("authorized_keys".into(), public_key)],
        build_files: Vec::new(),
        script,
        size: SIZE,
        label: "hutch-root".into(),
    }
}
