//! Disk images for the QEMU backend: a VM boots hutch's kernel and initramfs
//! (from the default image) and the initramfs hands over to the disk's own
//! init (systemd). Each VM writes to its own copy-on-write overlay
//! (`qemu-img create -f qcow2 -b BASE`), so the base is never written.
//!
//! Where the base comes from:
//! - an image folder whose `image.json` names a disk (`hutch image prepare`
//!   makes those under `$state/images/NAME`): the VM's copy links the disk;
//! - a bare disk file (raw or qcow2), as `hutch image prepare BASE` boots:
//!   the VM's image folder gets a symlink to it plus the default image's
//!   kernel and initramfs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::image::{DiskFormat, DiskSpec, GuestImage, IMAGE_FILE, ImageSpec, Init};
use crate::backend::BackendError;

/// Each VM's writable overlay, in its folder.
pub const OVERLAY: &str = "disk.qcow2";

/// Kernel command line for disk images: the initramfs's `/init` finds the
/// root filesystem on the first disk (whole disk or a partition) when it sees
/// `hutch.root=`.
pub const DISK_CMDLINE: &str = "console=ttyS0 quiet panic=-1 8250.nr_uarts=1 no_timer_check hutch.root=auto";

/// What tells the initramfs to hand over to hutch's init (see `xtask/src/image/init.rs`).
pub const HUTCH_INIT_ARG: &str = "hutch.init=agent";

/// The qcow2 magic: `QFI\xfb`.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// Tells a disk file's format by its first bytes; refuses what is clearly
/// not a disk (empty, tiny, a folder).
pub fn detect(path: &Path) -> Result<DiskFormat, BackendError> {
    let bad = |why: String| BackendError::Image { path: path.to_path_buf(), why };
    let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a disk image file".into()));
    }
    let len = meta.len();
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(|_| bad(format!("{len} bytes is too small for a disk image")))?;
    if &magic == QCOW2_MAGIC {
        return Ok(DiskFormat::Qcow2);
    }
    if len < 1 << 20 || len % 512 != 0 {
        return Err(bad(format!("{len} bytes is not a raw disk image (expected a multiple of 512 bytes, at least 1 MiB) nor qcow2")));
    }
    Ok(DiskFormat::Raw)
}

/// Builds a VM's image folder `to` for a bare disk file `disk`: a symlink to
/// it (never written: VMs write to their overlay) and the kernel and
/// initramfs of `boot` (the default image), with the disk command line for
/// `init` (the disk's own, or hutch's: `hutch.init=agent`).
pub fn image_for_disk(disk: &Path, boot: &GuestImage, to: &Path, init: Init) -> Result<GuestImage, BackendError> {
    let format = detect(disk)?;
    let disk = std::fs::canonicalize(disk).map_err(BackendError::io(format!("resolving {}", disk.display())))?;
    std::fs::create_dir_all(to).map_err(BackendError::io(format!("creating {}", to.display())))?;
    let file = format!("base.{}", format.as_str());
    let _ = std::fs::remove_file(to.join(&file));
    std::os::unix::fs::symlink(&disk, to.join(&file)).map_err(BackendError::io(format!("linking {}", disk.display())))?;
    for name in [&boot.spec.kernel, &boot.spec.initrd] {
        link_or_copy(&boot.dir.join(name), &to.join(name))?;
    }
    // The init asked for, whatever the default image boots (its kernel and initramfs serve both).
    let cmdline = match init {
        Init::Disk => DISK_CMDLINE.to_owned(),
        Init::Hutch => format!("{DISK_CMDLINE} {HUTCH_INIT_ARG}"),
    };
    let spec = ImageSpec { cmdline, disk: Some(DiskSpec { file, format }), init, ..boot.spec.clone() };
    write_spec(to, &spec)?;
    GuestImage::load(to)
}

/// Writes `image.json` into `dir`.
pub fn write_spec(dir: &Path, spec: &ImageSpec) -> Result<(), BackendError> {
    let text = serde_json::to_string_pretty(spec).map_err(|e| BackendError::Io { what: "encoding image.json".into(), source: e.into() })?;
    std::fs::write(dir.join(IMAGE_FILE), text).map_err(BackendError::io(format!("writing {}", dir.join(IMAGE_FILE).display())))
}

/// A hard link, or a copy across file systems.
pub fn link_or_copy(from: &Path, to: &Path) -> Result<(), BackendError> {
    let _ = std::fs::remove_file(to);
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(BackendError::io(format!("copying {} to {}", from.display(), to.display())))?;
    }
    Ok(())
}

/// Creates the VM's overlay `overlay` on top of `image`'s disk, of the
/// base's size or `size` bytes (sparse either way; at least the base's: the
/// guest grows its file system into the rest).
pub fn create_overlay(qemu_img: &Path, image: &GuestImage, overlay: &Path, size: Option<u64>) -> Result<(), BackendError> {
    let (Some(disk), Some(spec)) = (image.disk(), image.spec.disk.as_ref()) else { return Ok(()) };
    let base = virtual_size(&disk, spec.format)?;
    if let Some(size) = size.filter(|&size| size < base) {
        return Err(crate::backend::disk_size::smaller_than_base(&format!("the image {}", disk.display()), base, size));
    }
    let _ = std::fs::remove_file(overlay);
    // Named relative to the overlay's folder when it is inside it (a VM's
    // own image copy): the folder stays whole when moved or linked from (see
    // `super::layers`).
    let backing = overlay.parent().and_then(|folder| disk.strip_prefix(folder).ok()).unwrap_or(&disk);
    let mut cmd = Command::new(qemu_img);
    cmd.args(["create", "-q", "-f", "qcow2", "-F", spec.format.as_str(), "-b"]).arg(backing).arg(overlay);
    if let Some(size) = size {
        cmd.arg(size.to_string());
    }
    run(qemu_img, cmd)
}

/// The size the guest sees of a disk file: a raw file's length, or the
/// size in a qcow2 header (bytes 24..32, big-endian).
pub fn virtual_size(path: &Path, format: DiskFormat) -> Result<u64, BackendError> {
    let bad = |why: String| BackendError::Image { path: path.to_path_buf(), why };
    let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    match format {
        DiskFormat::Raw => Ok(file.metadata().map_err(|e| bad(e.to_string()))?.len()),
        DiskFormat::Qcow2 => {
            let mut header = [0u8; 32];
            file.read_exact(&mut header).map_err(|e| bad(format!("reading its qcow2 header: {e}")))?;
            Ok(u64::from_be_bytes(header[24..32].try_into().unwrap_or_default()))
        }
    }
}

/// Writes `overlay` (with everything of its backing chain) as one standalone
/// qcow2 file at `dest`.
pub fn flatten(qemu_img: &Path, overlay: &Path, dest: &Path) -> Result<(), BackendError> {
    let mut cmd = Command::new(qemu_img);
    cmd.args(["convert", "-q", "-O", "qcow2"]).arg(overlay).arg(dest);
    run(qemu_img, cmd)
}

/// Runs `program` (qemu-img) as `cmd`; its error output on failure.
pub(crate) fn run(program: &Path, mut cmd: Command) -> Result<(), BackendError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackendError::MissingTool {
            tool: program.display().to_string(),
            install: "install it (Debian/Ubuntu: `apt-get install qemu-utils`), or set HUTCH_QEMU_IMG to its path".into(),
        },
        _ => BackendError::Io { what: format!("running {}", program.display()), source: e },
    })?;
    if !out.status.success() {
        return Err(BackendError::Command { command: shown, why: String::from_utf8_lossy(&out.stderr).trim().to_owned() });
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that nothing listens on right now, for QEMU's
/// forward to the guest's SSH server.
pub fn free_port() -> Result<u16, BackendError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(BackendError::io("finding a free port"))?;
    Ok(listener.local_addr().map_err(BackendError::io("finding a free port"))?.port())
}

/// qemu-img: `HUTCH_QEMU_IMG`, else from PATH.
pub fn qemu_img() -> PathBuf {
    std::env::var_os("HUTCH_QEMU_IMG").map_or_else(|| PathBuf::from("qemu-img"), PathBuf::from)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn formats_by_their_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let qcow = dir.path().join("a.qcow2");
        std::fs::write(&qcow, b"QFI\xfb\0\0\0\x03").unwrap();
        assert_eq!(detect(&qcow).unwrap(), DiskFormat::Qcow2);
        let raw = dir.path().join("a.img");
        std::fs::write(&raw, vec![0u8; 2 << 20]).unwrap();
        assert_eq!(detect(&raw).unwrap(), DiskFormat::Raw);
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let err = detect(&text).unwrap_err().to_string();
        assert!(err.contains("not a raw disk image"), "{err}");
        assert!(detect(dir.path()).is_err());
        assert!(detect(&dir.path().join("missing")).is_err());
    }

    /// An image folder `dir/image` with a 64 MiB raw disk (`base.img`), as
    /// a VM's copy of the default image looks.
    pub(crate) fn small_disk_image(dir: &Path) -> GuestImage {
        let image_dir = dir.join(super::super::IMAGE_DIR);
        std::fs::create_dir(&image_dir).unwrap();
        for file in ["vmlinux", "initramfs.cpio"] {
            std::fs::write(image_dir.join(file), "x").unwrap();
        }
        std::fs::File::create(image_dir.join("base.img")).unwrap().set_len(64 << 20).unwrap();
        let spec = ImageSpec {
            format: 1,
            kernel: "vmlinux".into(),
            initrd: "initramfs.cpio".into(),
            cmdline: String::new(),
            agent_port: 8080,
            disk: Some(DiskSpec { file: "base.img".into(), format: DiskFormat::Raw }),
            init: Init::Hutch,
        };
        write_spec(&image_dir, &spec).unwrap();
        GuestImage::load(&image_dir).unwrap()
    }

    #[test]
    fn overlays_are_the_size_asked_for_and_never_smaller_than_their_base() {
        let dir = tempfile::tempdir().unwrap();
        let image = small_disk_image(dir.path());
        let err = create_overlay(&qemu_img(), &image, &dir.path().join("small.qcow2"), Some(32 << 20)).unwrap_err().to_string();
        assert!(err.contains("has a disk of 64 MiB") && err.contains("not 32 MiB") && err.contains("--disk"), "{err}");
        let overlay = dir.path().join("big.qcow2");
        match create_overlay(&qemu_img(), &image, &overlay, Some(1 << 30)) {
            Err(BackendError::MissingTool { .. }) => {} // no qemu-img on this machine
            other => {
                other.unwrap();
                assert_eq!(virtual_size(&overlay, DiskFormat::Qcow2).unwrap(), 1 << 30);
                assert!(std::fs::metadata(&overlay).unwrap().len() < 1 << 20, "the overlay is sparse");
            }
        }
    }

    #[test]
    fn a_bare_disk_boots_the_init_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let boot_dir = dir.path().join("boot");
        std::fs::create_dir(&boot_dir).unwrap();
        for file in ["vmlinux", "initramfs.cpio"] {
            std::fs::write(boot_dir.join(file), "x").unwrap();
        }
        let boot = ImageSpec {
            format: 1,
            kernel: "vmlinux".into(),
            initrd: "initramfs.cpio".into(),
            cmdline: "console=ttyS0".into(),
            agent_port: 8080,
            disk: None,
            init: Init::Disk,
        };
        write_spec(&boot_dir, &boot).unwrap();
        let boot = GuestImage::load(&boot_dir).unwrap();
        let disk = dir.path().join("root.img");
        std::fs::File::create(&disk).unwrap().set_len(8 << 20).unwrap();
        let own = image_for_disk(&disk, &boot, &dir.path().join("own"), Init::Disk).unwrap();
        assert_eq!((own.spec.init, own.spec.cmdline.as_str()), (Init::Disk, DISK_CMDLINE));
        let hutch = image_for_disk(&disk, &boot, &dir.path().join("hutch"), Init::Hutch).unwrap();
        assert_eq!(hutch.spec.init, Init::Hutch);
        assert_eq!(hutch.spec.cmdline, format!("{DISK_CMDLINE} hutch.init=agent"));
        let written: ImageSpec =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("hutch").join(IMAGE_FILE)).unwrap()).unwrap();
        assert_eq!(written.init, Init::Hutch, "image.json says which init the saved image boots");
    }
}
