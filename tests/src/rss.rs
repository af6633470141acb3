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

/// Runs `cmd` (stdin from /dev/null) to its end and returns its output and
/// its peak resident set in KiB, as the kernel accounted it for that one
/// process (`wait4`'s `ru_maxrss`): no sampling, nothing missed.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std's Child does not know
pub fn run_measured(cmd: &mut std::process::Command) -> (std::process::Output, u64) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let mut stderr = Vec::new();
    let _ = err.read_to_end(&mut stderr);
    let stdout = reader.join().expect("stdout reader");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our unwaited child; the pointers are to live locals.
    let pid = unsafe { nix::libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4: {}", std::io::Error::last_os_error());
    let status = std::os::unix::process::ExitStatusExt::from_raw(status);
    (std::process::Output { status, stdout, stderr }, u64::try_from(usage.ru_maxrss).unwrap_or(0))
}
