//! Guest images for the QEMU backend: a folder with a kernel, an initramfs
//! and `image.json` describing them, as `cargo xtask image` builds, plus for
//! disk images (`hutch image prepare`) a disk file.
//!
//! ```json
//! { "format": 1, "kernel": "vmlinuz", "initrd": "initramfs.cpio",
//!   "cmdline": "console=ttyS0 quiet panic=-1", "agent_port": 8080,
//!   "disk": { "file": "disk.qcow2", "format": "qcow2" } }
//! ```
//!
//! Without a disk the guest's root filesystem lives in RAM. With one, the
//! initramfs mounts the disk's root filesystem and hands over either to the
//! disk's own init (systemd: `hutch image prepare` images) or, with `"init":
//! "hutch"`, to hutch's own init (the agent from the initramfs as PID 1: the
//! default Debian image); each VM then writes to a copy-on-write overlay of
//! the disk ([`super::disk`]). A VM's copy of its image is a set of hard links
//! either way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendError;

/// The image description file.
pub const IMAGE_FILE: &str = "image.json";

/// What the agent prints on the console once it listens.
const READY_MARKER: &[u8] = b" ready on vsock://";

/// What `image.json` says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageSpec {
    /// Format version (1).
    pub format: u32,
    /// Kernel file name, relative to the image folder.
    pub kernel: String,
    /// Initramfs file name, relative to the image folder.
    pub initrd: String,
    /// Kernel command line.
    pub cmdline: String,
    /// The vsock port the guest agent listens on.
    pub agent_port: u32,
    /// The root disk, for images whose system lives on a disk (absent: RAM only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskSpec>,
    /// Which init a disk image boots.
    #[serde(default, skip_serializing_if = "Init::is_disk")]
    pub init: Init,
}

/// Which init a disk image boots, and so how hutch talks to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The disk's own `/sbin/init` (systemd), which runs the agent as a
    /// service installed over SSH (`hutch image prepare`): the VM gets a
    /// network device with a forwarded SSH port.
    #[default]
    Disk,
    /// hutch's own init: the initramfs's agent runs as PID 1 on the disk's
    /// root, starts the agent proper and takes the host user's ids from the
    /// kernel command line. No network device (egress is the network design's).
    Hutch,
}

impl Init {
    /// Whether this is the default (left out of `image.json`).
    pub fn is_disk(&self) -> bool {
        *self == Init::Disk
    }
}

/// An image's root disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// File name, relative to the image folder.
    pub file: String,
    /// Its format, as QEMU names it.
    pub format: DiskFormat,
}

/// Disk file formats QEMU reads (and hutch detects by their first bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A plain disk image (`.img`, `.raw`), e.g. from `mke2fs -d` or `dd`.
    Raw,
    /// QEMU's copy-on-write format (cloud images, hutch's prepared images).
    Qcow2,
}

impl DiskFormat {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A loaded, checked image.
#[derive(Clone, Debug)]
pub struct GuestImage {
    /// The folder.
    pub dir: PathBuf,
    /// Its description.
    pub spec: ImageSpec,
}

impl GuestImage {
    /// Reads and checks the image in `dir`.
    pub fn load(dir: &Path) -> Result<GuestImage, BackendError> {
        let bad = |why: String| BackendError::Image { path: dir.to_path_buf(), why };
        let text = std::fs::read_to_string(dir.join(IMAGE_FILE)).map_err(|e| bad(format!("{IMAGE_FILE}: {e}")))?;
        let spec: ImageSpec = serde_json::from_str(&text).map_err(|e| bad(format!("{IMAGE_FILE}: {e}")))?;
        if spec.format != 1 {
            return Err(bad(format!("image format {} is not supported (expected 1)", spec.format)));
        }
        for file in [&spec.kernel, &spec.initrd].into_iter().chain(spec.disk.as_ref().map(|d| &d.file)) {
            if file.contains('/') || !dir.join(file).is_file() {
                return Err(bad(format!("{file} is missing")));
            }
        }
        Ok(GuestImage { dir: dir.to_path_buf(), spec })
    }

    /// The kernel's path.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join(&self.spec.kernel)
    }

    /// The initramfs's path.
    pub fn initrd(&self) -> PathBuf {
        self.dir.join(&self.spec.initrd)
    }

    /// The root disk's path, for disk images.
    pub fn disk(&self) -> Option<PathBuf> {
        self.spec.disk.as_ref().map(|d| self.dir.join(&d.file))
    }

    /// Gives a VM its own copy of the image in `to` (created): hard links
    /// where possible (no file is ever written in place: a rebuilt base image
    /// gets new files, so the VM's links keep the old ones), copies otherwise.
    /// A disk is only ever read through the link (VMs write to an overlay).
    pub fn copy_to(&self, to: &Path) -> Result<GuestImage, BackendError> {
        std::fs::create_dir_all(to).map_err(BackendError::io(format!("creating {}", to.display())))?;
        let disk = self.spec.disk.as_ref().map(|d| d.file.as_str());
        for file in [IMAGE_FILE, &self.spec.kernel, &self.spec.initrd].into_iter().chain(disk) {
            let (from, dest) = (self.dir.join(file), to.join(file));
            let _ = std::fs::remove_file(&dest);
            if std::fs::hard_link(&from, &dest).is_ok() {
                continue;
            }
            if Some(file) == disk {
                // Disks are big and only read: across file systems, point at the image's.
                let from = std::fs::canonicalize(&from).map_err(BackendError::io(format!("resolving {}", from.display())))?;
                std::os::unix::fs::symlink(&from, &dest).map_err(BackendError::io(format!("linking {}", from.display())))?;
            } else {
                std::fs::copy(&from, &dest).map_err(BackendError::io(format!("copying {} to {}", from.display(), dest.display())))?;
            }
        }
        GuestImage::load(to)
    }

    /// Whether the guest's console says its agent is listening: images built
    /// by `cargo xtask image` run the agent with its stdout on the console,
    /// and the agent prints `… ready on …` once every listener is bound.
    pub fn console_says_ready(console: &Path) -> bool {
        std::fs::read(console).is_ok_and(|text| text.windows(READY_MARKER.len()).any(|w| w == READY_MARKER))
    }
}

/// Which files the image in `dir` is made of right now, for a warm pool's
/// key: a rebuilt or replaced image (new files, never rewritten in place)
/// is another image, though its name is the same.
pub fn fingerprint(dir: &Path) -> serde_json::Value {
    let Ok(image) = GuestImage::load(dir) else { return serde_json::json!({ "unusable": dir }) };
    let disk = image.spec.disk.as_ref().map(|d| d.file.as_str());
    let files: Vec<serde_json::Value> = [IMAGE_FILE, &image.spec.kernel, &image.spec.initrd]
        .into_iter()
        .chain(disk)
        .map(|file| serde_json::json!([file, file_identity(&dir.join(file))]))
        .collect();
    serde_json::json!({ "dir": dir, "files": files })
}

/// A file's identity as the file system has it (device, inode, size,
/// modification time), following symlinks; null when it cannot be read.
pub fn file_identity(path: &Path) -> serde_json::Value {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => serde_json::json!([m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()]),
        Err(_) => serde_json::Value::Null,
    }
}
