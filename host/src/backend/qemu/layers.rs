//! A disk-image VM's disk as a chain of qcow2 layers, so `hutch fork` can
//! give new VMs the disk a VM has now without copying it.
//!
//! A VM writes to its *active* overlay (`disk.qcow2` until its first fork,
//! named in its record after that). Forking freezes it: a new, empty overlay
//! on top of it becomes the parent's active one (through QMP's
//! `blockdev-snapshot-sync` while the VM runs), and each child gets an
//! empty overlay of its own on the frozen one. Nobody writes a frozen layer
//! again; the parent and every child read it, copy-on-write.
//!
//! Every layer names its backing file *relative to its own folder*
//! (`image/debian.img`, `disk.qcow2`), and every VM folder holds hard links
//! to each file of its chain under the same names. So each VM's folder is
//! whole on its own: removing the parent (or any child) drops only links,
//! and the shared layers live as long as one VM still uses them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::disk::{self, OVERLAY};
use super::image::{DiskFormat, GuestImage};
use super::qmp::Session;
use crate::backend::BackendError;

/// The qcow2 magic: `QFI\xfb`.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// The longest backing file name qcow2 allows (its specification's limit).
const MAX_BACKING_NAME: u32 = 1023;
/// The drive id QEMU knows the disk by (`-drive …,id=disk0`).
pub const DRIVE: &str = "disk0";

/// The VM's active overlay: `name` from its record, or the first one.
pub fn active(name: Option<&str>) -> &str {
    name.unwrap_or(OVERLAY)
}

/// What a qcow2 file's header names as its backing file, if anything.
pub fn backing_name(path: &Path) -> Result<Option<String>, BackendError> {
    let bad = |why: String| BackendError::Image { path: path.to_path_buf(), why };
    let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut header = [0u8; 20];
    file.read_exact(&mut header).map_err(|e| bad(format!("reading its qcow2 header: {e}")))?;
    if &header[..4] != QCOW2_MAGIC {
        return Err(bad("not a qcow2 file".into()));
    }
    let offset = u64::from_be_bytes(header[8..16].try_into().unwrap_or_default());
    let size = u32::from_be_bytes(header[16..20].try_into().unwrap_or_default());
    if offset == 0 || size == 0 {
        return Ok(None);
    }
    if size > MAX_BACKING_NAME {
        return Err(bad(format!("its backing file name is {size} bytes long (qcow2 allows {MAX_BACKING_NAME})")));
    }
    let mut name = vec![0u8; size as usize];
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).map_err(|e| bad(e.to_string()))?;
    file.read_exact(&mut name).map_err(|e| bad(format!("reading its backing file name: {e}")))?;
    String::from_utf8(name).map(Some).map_err(|_| bad("its backing file name is not UTF-8".into()))
}

/// The layers below `top` in `dir` (`top` first), down to the image's own
/// disk (not included: it is in the image folder, which is linked as a
/// whole). Refuses a chain that leaves the folder: a VM made by a hutch from
/// before layers named its base by an absolute path, which a fork could not
/// carry over to its children.
pub fn chain(dir: &Path, top: &str) -> Result<Vec<String>, BackendError> {
    let mut layers = vec![top.to_owned()];
    let mut current = top.to_owned();
    while let Some(below) = backing_name(&dir.join(&current))? {
        if below.starts_with(&format!("{}/", super::IMAGE_DIR)) && !below.contains("..") {
            return Ok(layers);
        }
        if !is_layer_name(&below) || layers.contains(&below) {
            return Err(BackendError::Unsupported(format!(
                "the disk of {} is based on {below}, outside its folder (made by an older hutch): a fork could not \
                 carry it over; make the VM again (`hutch reset`) to fork it",
                dir.display()
            )));
        }
        layers.push(below.clone());
        current = below;
    }
    Ok(layers)
}

/// A plain qcow2 file name in a VM folder.
fn is_layer_name(name: &str) -> bool {
    name.ends_with(".qcow2") && !name.contains('/') && !name.starts_with('.')
}

/// A new overlay name in `dir` that no file and none of `taken` has.
fn fresh_name(dir: &Path, taken: &[String]) -> String {
    (1u32..)
        .map(|n| format!("disk-{n}.qcow2"))
        .find(|name| !taken.contains(name) && !dir.join(name).exists())
        .unwrap_or_else(|| OVERLAY.to_owned())
}

/// Creates `overlay` in `dir` on top of `backing` (a name in `dir`), the
/// size the backing says, without opening it: a running QEMU holds its lock.
fn create_on(qemu_img: &Path, dir: &Path, backing: &str, overlay: &str) -> Result<(), BackendError> {
    let size = disk::virtual_size(&dir.join(backing), DiskFormat::Qcow2)?;
    let mut cmd = Command::new(qemu_img);
    cmd.args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-u", "-b", backing]).arg(dir.join(overlay)).arg(size.to_string());
    disk::run(qemu_img, cmd)
}

/// Freezes the active overlay `active` of the VM in `dir` and puts a new,
/// empty one on top of it, which the VM writes from now on. With `qmp`
/// (the VM runs), QEMU switches to it while the VM is paused (`stop`, then
/// `blockdev-snapshot-sync`, then `cont`, whatever happened). Returns the
/// new active overlay's name; the frozen layer keeps its name.
pub fn freeze(qemu_img: &Path, dir: &Path, active: &str, qmp: Option<&Path>) -> Result<String, BackendError> {
    let chain = chain(dir, active)?;
    let next = fresh_name(dir, &chain);
    create_on(qemu_img, dir, active, &next)?;
    let Some(qmp) = qmp else { return Ok(next) };
    let switched = (|| {
        let mut session = Session::open(qmp)?;
        session.execute("stop", None)?;
        let snapshot = json!({
            "device": DRIVE,
            "snapshot-file": dir.join(&next).display().to_string(),
            "format": "qcow2",
            "mode": "existing",
        });
        let switched = session.execute("blockdev-snapshot-sync", Some(snapshot));
        let resumed = session.execute("cont", None);
        switched.and(resumed)
    })();
    if let Err(e) = switched {
        let _ = std::fs::remove_file(dir.join(&next));
        return Err(BackendError::Boot(format!("could not put a new overlay on the running VM's disk: {e}")));
    }
    Ok(next)
}

/// Fills the folder `child` of a new VM whose disk starts as the frozen
/// layer `frozen` of the VM in `parent`: hard links to the parent's image
/// folder and to every layer of the chain, then an empty overlay of its own
/// on top. Returns the child's active overlay's name.
pub fn branch(qemu_img: &Path, parent: &Path, frozen: &str, child: &Path) -> Result<String, BackendError> {
    let chain = chain(parent, frozen)?;
    GuestImage::load(&parent.join(super::IMAGE_DIR))?.copy_to(&child.join(super::IMAGE_DIR))?;
    for layer in &chain {
        disk::link_or_copy(&parent.join(layer), &child.join(layer))?;
    }
    let active = fresh_name(child, &chain);
    create_on(qemu_img, child, frozen, &active)?;
    Ok(active)
}

/// Removes every layer file of the VM in `dir` (its image folder goes
/// separately): links only, for the layers other VMs share.
pub fn remove_all(dir: &Path) {
    let layers: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(is_layer_name))
        .map(|entry| entry.path())
        .collect();
    for layer in layers {
        let _ = std::fs::remove_file(layer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM folder with a 64 MiB raw image disk and its first overlay, as
    /// `create` makes it; `None` when this machine has no qemu-img.
    fn vm_folder() -> Option<tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let image = disk::tests::small_disk_image(dir.path());
        match disk::create_overlay(&disk::qemu_img(), &image, &dir.path().join(OVERLAY), None) {
            Err(BackendError::MissingTool { .. }) => None,
            other => {
                other.unwrap();
                Some(dir)
            }
        }
    }

    #[test]
    fn a_frozen_layer_is_shared_by_links_and_each_folder_stands_alone() {
        let Some(parent) = vm_folder() else { return };
        let qemu_img = disk::qemu_img();
        assert_eq!(backing_name(&parent.path().join(OVERLAY)).unwrap().as_deref(), Some("image/base.img"));
        assert_eq!(chain(parent.path(), OVERLAY).unwrap(), [OVERLAY]);

        // A stopped VM: no QMP; the new overlay sits on the old one.
        let active = freeze(&qemu_img, parent.path(), OVERLAY, None).unwrap();
        assert_eq!(active, "disk-1.qcow2");
        assert_eq!(chain(parent.path(), &active).unwrap(), ["disk-1.qcow2", OVERLAY]);
        assert_eq!(disk::virtual_size(&parent.path().join(&active), DiskFormat::Qcow2).unwrap(), 64 << 20);

        let child = tempfile::tempdir().unwrap();
        let child_active = branch(&qemu_img, parent.path(), OVERLAY, child.path()).unwrap();
        assert_eq!(child_active, "disk-1.qcow2", "a name free in the child's folder");
        assert_eq!(chain(child.path(), &child_active).unwrap(), ["disk-1.qcow2", OVERLAY]);
        let (a, b) = (std::fs::metadata(parent.path().join(OVERLAY)).unwrap(), std::fs::metadata(child.path().join(OVERLAY)).unwrap());
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&a), std::os::unix::fs::MetadataExt::ino(&b), "the frozen layer is linked");

        // The parent goes: the child's chain is whole, and qemu-img agrees.
        drop(parent);
        let out = Command::new(&qemu_img).arg("info").arg("--backing-chain").arg(child.path().join(&child_active)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        remove_all(child.path());
        assert!(!child.path().join(OVERLAY).exists() && child.path().join("image/base.img").exists());
    }

    #[test]
    fn chains_that_leave_the_folder_are_refused() {
        let Some(vm) = vm_folder() else { return };
        let mut cmd = Command::new(disk::qemu_img());
        cmd.args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"]).arg(vm.path().join("image/base.img")).arg(vm.path().join("old.qcow2"));
        disk::run(&disk::qemu_img(), cmd).unwrap();
        let err = chain(vm.path(), "old.qcow2").unwrap_err().to_string();
        assert!(err.contains("outside its folder") && err.contains("hutch reset"), "{err}");
        std::fs::write(vm.path().join("plain.qcow2"), b"not qcow2 at all, just text").unwrap();
        assert!(backing_name(&vm.path().join("plain.qcow2")).is_err());
    }
}
