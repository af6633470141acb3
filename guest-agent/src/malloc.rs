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

/// Chunks up to this size come from the heap, where freed ones are reused.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Free memory at the heap's top is given back only beyond this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 2 << 20;

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
