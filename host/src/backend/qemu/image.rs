//! Guest images for the QEMU backend: a folder with a kernel, an initramfs
//! and `image.json` describing them, as `cargo xtask image` builds.
//!
//! ```json
//! { "format": 1, "kernel": "vmlinuz", "initrd": "initramfs.cpio",
//!   "cmdline": "console=ttyS0 quiet panic=-1", "agent_port": 8080 }
//! ```
//!
//! The guest's root filesystem lives in RAM, so a VM's "clone" of its image is
//! a plain copy that the base image can change under without affecting it.

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
        for file in [&spec.kernel, &spec.initrd] {
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

    /// Gives a VM its own copy of the image in `to` (created): hard links
    /// where possible (no file is ever written in place: a rebuilt base image
    /// gets new files, so the VM's links keep the old ones), copies otherwise.
    pub fn copy_to(&self, to: &Path) -> Result<GuestImage, BackendError> {
        std::fs::create_dir_all(to).map_err(BackendError::io(format!("creating {}", to.display())))?;
        for file in [IMAGE_FILE, &self.spec.kernel, &self.spec.initrd] {
            let (from, dest) = (self.dir.join(file), to.join(file));
            let _ = std::fs::remove_file(&dest);
            if std::fs::hard_link(&from, &dest).is_err() {
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
