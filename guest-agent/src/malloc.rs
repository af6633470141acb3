//! The allocator's thresholds, fixed for an agent that streams output in
//! 256 KiB chunks.
//!
//! glibc's defaults hand a chunk of that size to `mmap` at first, then raise
//! the threshold and serve it from the heap, but trim the heap back with
//! `brk` whenever 2 × the chunk size is free at its top. A bulk exec then
//! shrinks and regrows the heap hundreds of times (532 `brk` calls for
//! 256 MiB of stdout), and every regrown page faults again. Fixed values keep
//! 2 MiB free at the top for the next chunks. That ends the churn (12 to 25
//! `brk` calls for the same exec; 1 MiB still left 260 to 460), and the frees
//! of the next small exec still trim the heap back, so the idle RSS stays
//! where glibc's defaults leave it (4 MiB kept 2.6 MiB more for good). Other
//! C libraries keep their own policy.

use std::sync::atomic::{AtomicBool, Ordering};

/// Chunks up to this size come from the heap, where freed ones are reused.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Free memory at the heap's top is given back only beyond this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 2 << 20;

/// Whether bulk output went through since the heap was last trimmed.
static BULK_SINCE_TRIM: AtomicBool = AtomicBool::new(false);

/// Notes that a large output chunk was handed over: the heap grew for it.
pub fn note_bulk() {
    BULK_SINCE_TRIM.store(true, Ordering::Relaxed);
}

/// Gives the heap's free memory back to the kernel (`malloc_trim`) if bulk
/// output went through since last time: called when the last running exec
/// ends, so what a bulk exec used does not stay resident while the agent
/// idles. After small execs there is nothing worth it, and trimming anyway
/// cost `exec -- true` 0.19 ms of agent CPU.
pub fn give_back() {
    if !BULK_SINCE_TRIM.swap(false, Ordering::Relaxed) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory; it is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Gives the heap's free memory back to the kernel now, whatever went
/// before: after a Sync or a diff (rare, and megabytes through the heap,
/// on threads with arenas of their own), and when a connection ends.
pub fn trim() {
    BULK_SINCE_TRIM.store(false, Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory; it is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Free heap worth a trim when a connection ends: more than the trim
/// threshold keeps anyway, so an ordinary connection's end costs no trim
/// (0.2 ms), and one that left megabytes behind gives them back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const WORTH_TRIMMING: usize = 4 << 20;

/// Trims the heap if it holds more than [`WORTH_TRIMMING`] free.
pub fn trim_if_worth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let free = unsafe { nix::libc::mallinfo2() }.fordblks;
        if free > WORTH_TRIMMING {
            trim();
        }
    }
}

/// Sets the thresholds; call once, before the runtime starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other
    // thread exists. A refused value (returns 0) leaves glibc's default.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
