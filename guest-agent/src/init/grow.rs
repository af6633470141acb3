//! A VM's disk may be bigger than its image's file system (`disk = "40G"`):
//! the root file system is grown to fill it, online, in the background
//! (`resize2fs` on the mounted ext4), once; the agent starts meanwhile.

use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::log;

/// Smaller differences are left alone: a file system ends on a whole block
/// group, so it rarely fills its device to the byte.
const SLACK: u64 = 64 << 20;
/// The ext4 superblock's magic number.
const EXT4_MAGIC: u16 = 0xef53;

/// Starts `resize2fs` when the root file system is smaller than its disk;
/// returns its pid.
pub fn start() -> Option<Pid> {
    let device = root_device()?;
    let name = device.strip_prefix("/dev/")?;
    let sectors: u64 = std::fs::read_to_string(format!("/sys/class/block/{name}/size")).ok()?.trim().parse().ok()?;
    let file = std::fs::File::open(&device).ok()?;
    let mut superblock = [0u8; 1024];
    file.read_exact_at(&mut superblock, 1024).ok()?;
    let fs_bytes = ext4_size(&superblock)?;
    if sectors * 512 < fs_bytes + SLACK {
        return None;
    }
    log(format!("growing the root file system on {device} from {} to {} MiB", fs_bytes >> 20, (sectors * 512) >> 20));
    match Command::new("/sbin/resize2fs").arg(&device).stdin(Stdio::null()).stdout(Stdio::null()).spawn() {
        Ok(child) => Some(Pid::from_raw(child.id() as i32)),
        Err(e) => {
            log(format!("resize2fs: {e}"));
            None
        }
    }
}

/// Logs how the resize ended.
pub fn finished(status: WaitStatus) {
    match status {
        WaitStatus::Exited(_, 0) => log("the root file system fills its disk now"),
        other => log(format!("resize2fs failed ({other:?}): the root file system keeps its size")),
    }
}

/// The block device mounted at `/`, from the mount table.
fn root_device() -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        let source = right.split_whitespace().nth(1)?;
        (mount_point == "/" && source.starts_with("/dev/")).then(|| source.to_owned())
    })
}

/// The size in bytes of the ext2/3/4 file system whose superblock is `sb`.
fn ext4_size(sb: &[u8; 1024]) -> Option<u64> {
    let u32_at = |o: usize| u64::from(u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]));
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != EXT4_MAGIC {
        return None;
    }
    let incompat_64bit = u32_at(0x60) & 0x80 != 0;
    let blocks = u32_at(0x04) | if incompat_64bit { u32_at(0x150) << 32 } else { 0 };
    let block_size = 1024u64.checked_shl(u32::try_from(u32_at(0x18)).ok()?)?;
    blocks.checked_mul(block_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_of_a_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
        let Ok(status) = Command::new("mke2fs").args(["-q", "-F", "-t", "ext4"]).arg(&image).arg("48M").status() else {
            return; // no e2fsprogs here
        };
        assert!(status.success());
        let mut superblock = [0u8; 1024];
        std::fs::File::open(&image).unwrap().read_exact_at(&mut superblock, 1024).unwrap();
        assert_eq!(ext4_size(&superblock), Some(48 << 20));
        superblock[0x38] = 0;
        assert_eq!(ext4_size(&superblock), None);
    }
}
