//! Powering off cleanly. `hutch down` asks QEMU for `system_powerdown`: an
//! ACPI power-button press, which the kernel reports on an input device
//! (`button` and `evdev` modules, loaded by the initramfs). A thread per
//! "Power Button" device turns a press into SIGPWR for the init, whose
//! [`shut_down`] stops every process, flushes and remounts the disk
//! read-only, and powers the VM off. Without that, writes still in the
//! guest's page cache (30 s of them) would be lost with the VM.

use std::io::Read;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use super::{log, reap, wait_signal};

/// How long processes get to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// `struct input_event` on 64-bit Linux: a timeval, u16 type, u16 code, i32 value.
const EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;

/// Starts a thread per power-button device.
pub fn watch_button() {
    let mut found = 0;
    for entry in std::fs::read_dir("/sys/class/input").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let device = std::fs::read_to_string(entry.path().join("device/name")).unwrap_or_default();
        if !device.trim().eq_ignore_ascii_case("power button") {
            continue;
        }
        match std::fs::File::open(format!("/dev/input/{name}")) {
            Ok(file) => {
                found += 1;
                std::thread::spawn(move || presses(file));
            }
            Err(e) => log(format!("/dev/input/{name}: {e}")),
        }
    }
    if found == 0 {
        log("no ACPI power button: `hutch down` will stop this VM without a clean shutdown");
    }
}

/// Reads input events; a power-key press signals the init.
fn presses(mut device: std::fs::File) {
    let mut event = [0u8; EVENT_SIZE];
    while device.read_exact(&mut event).is_ok() {
        if is_power_press(&event) {
            let _ = kill(Pid::this(), Signal::SIGPWR);
        }
    }
}

fn is_power_press(event: &[u8; EVENT_SIZE]) -> bool {
    let kind = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Stops everything and powers off. Never returns.
pub fn shut_down(signals: &SigSet) -> ! {
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + TERM_GRACE;
    while !all_gone() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log(format!("still running {TERM_GRACE:?} after SIGTERM, killed: {}", survivors().join(", ")));
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(100));
            reap();
            break;
        }
        let _ = wait_signal(signals, Some(left.min(Duration::from_millis(200))));
        reap();
    }
    nix::unistd::sync();
    unmount_all();
    if let Err(e) = mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>) {
        log(format!("remounting / read-only: {e}"));
    }
    nix::unistd::sync();
    // SAFETY: reboot(2) with a valid command; it does not return on success.
    unsafe { nix::libc::reboot(nix::libc::LINUX_REBOOT_CMD_POWER_OFF) };
    log(format!("power off failed: {}", std::io::Error::last_os_error()));
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Whether no process but the init is left (waitpid says no children, and
/// kill(-1, 0) finds nobody to signal).
fn all_gone() -> bool {
    kill(Pid::from_raw(-1), None).is_err()
}

/// `comm (pid)` of every user-space process but the init (kernel threads
/// have an empty command line).
fn survivors() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if pid != 1 && !cmdline.is_empty() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("{} ({pid})", comm.trim()));
        }
    }
    found
}

/// Detaches every mount below the root that is not a kernel file system
/// (the workspace share, heavy dirs' bind mounts), deepest first, so the
/// root can be remounted read-only.
fn unmount_all() {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let keep = ["/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run"];
    let mut points: Vec<String> = hutch_proto::mountinfo::mount_points(&table)
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| !keep.contains(&p.as_str()) && !p.starts_with("/proc/") && !p.starts_with("/sys/"))
        .collect();
    points.reverse();
    for point in points {
        if let Err(e) = umount2(point.as_str(), MntFlags::MNT_DETACH) {
            log(format!("unmounting {point}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_power_key_press_counts() {
        let event = |kind: u16, code: u16, value: i32| {
            let mut e = [0u8; EVENT_SIZE];
            e[16..18].copy_from_slice(&kind.to_ne_bytes());
            e[18..20].copy_from_slice(&code.to_ne_bytes());
            e[20..24].copy_from_slice(&value.to_ne_bytes());
            e
        };
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(0, 0, 0)), "sync report");
        assert!(!is_power_press(&event(EV_KEY, 30, 1)), "another key");
    }
}
