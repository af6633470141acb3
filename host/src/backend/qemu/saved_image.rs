//! What `hutch image prepare --backend qemu` leaves behind: the prepared
//! VM's disk (its overlay with the base underneath, flattened into one
//! standalone qcow2 file) plus the kernel and initramfs it booted, as an image
//! folder `$state/images/NAME/` that `hutch up --image NAME` clones.

use std::path::{Path, PathBuf};

use super::disk::{self, OVERLAY};
use super::image::{DiskFormat, DiskSpec, GuestImage, ImageSpec};
use super::{IMAGE_DIR, Qemu};
use crate::backend::BackendError;
use crate::state::StateDir;

/// The disk file of a prepared image.
const DISK_FILE: &str = "disk.qcow2";

impl Qemu {
    /// Saves the stopped VM in `vm_dir` as the image `name` (replacing one of
    /// that name in a single rename: VMs made from the old one keep their
    /// hard links to it). Returns the image folder.
    pub fn save_image(&self, vm_dir: &Path, name: &str) -> Result<PathBuf, BackendError> {
        let image = GuestImage::load(&vm_dir.join(IMAGE_DIR))?;
        let overlay = vm_dir.join(OVERLAY);
        if image.spec.disk.is_none() || !overlay.is_file() {
            return Err(BackendError::Unsupported(format!("{} has no disk to save as an image", vm_dir.display())));
        }
        let images = StateDir::at(&self.state_root).images_dir();
        std::fs::create_dir_all(&images).map_err(BackendError::io(format!("creating {}", images.display())))?;
        let staging = images.join(format!(".{name}.new.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(BackendError::io(format!("creating {}", staging.display())))?;
        let result = fill(&self.qemu_img, &image, &overlay, &staging);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let dest = images.join(name);
        crate::state::replace_dir(&staging, &dest).map_err(BackendError::io(format!("installing {}", dest.display())))?;
        Ok(dest)
    }
}

fn fill(qemu_img: &Path, image: &GuestImage, overlay: &Path, staging: &Path) -> Result<(), BackendError> {
    for file in [&image.spec.kernel, &image.spec.initrd] {
        disk::link_or_copy(&image.dir.join(file), &staging.join(file))?;
    }
    disk::flatten(qemu_img, overlay, &staging.join(DISK_FILE))?;
    let spec = ImageSpec { disk: Some(DiskSpec { file: DISK_FILE.into(), format: DiskFormat::Qcow2 }), ..image.spec.clone() };
    disk::write_spec(staging, &spec)?;
    GuestImage::load(staging).map(|_| ())
}
