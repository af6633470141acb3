//! How much memory a running agent holds, from `/proc/PID/status`, so tests
//! can check that an attack's memory is given back once it ends.

use std::time::{Duration, Instant};

/// The resident set the agent must be back under after an attack (the
/// issue's bound; an idle debug agent holds about 8 MiB, mostly its binary).
pub const AFTER_ATTACK_KIB: u64 = 16 * 1024;

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, `RssAnon`…).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The resident set of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// Asserts that `pid`'s resident set gets back under [`AFTER_ATTACK_KIB`].
/// The agent gives memory back when the attack's calls and connections have
/// ended, which it notices a moment after the client does: this polls (up to
/// `crate::PROMPT`) for that moment rather than sleeping a guessed time.
pub fn assert_back_under_limit(pid: u32, what: &str) {
    let deadline = Instant::now() + crate::PROMPT;
    loop {
        let rss = rss_kib(pid);
        if rss < AFTER_ATTACK_KIB {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the agent still holds {rss} KiB (peak {} KiB) after the attack ended; it must be back under {AFTER_ATTACK_KIB} KiB",
            status_kib(pid, "VmHWM")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
