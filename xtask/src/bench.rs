//! `cargo xtask bench`: hutch's speed claims, each measured beside an anchor
//! in the same run so the ratio means something on any machine.
//!
//! Rows so far (local agent on a Unix socket, release build):
//! - `hutch exec -- true`, the whole CLI process, beside `/bin/true`;
//! - stdout throughput of `hutch exec -- head -c N /dev/zero`, beside the same
//!   command run locally into the same pipe;
//! - agent RSS idle and with 50 execs in flight.
//!
//! SSH, rsync and VM rows join when their pieces exist (see the README).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use crate::local_agent::LocalAgent;
use crate::workspace::{Result, build_bins};

/// Median, min and max of a set of samples.
struct Stats {
    median: f64,
    min: f64,
    max: f64,
    runs: usize,
}

impl Stats {
    fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        Stats { median: samples[samples.len() / 2], min: samples[0], max: samples[samples.len() - 1], runs: samples.len() }
    }

    fn json(&self, unit: &str) -> Value {
        json!({ "unit": unit, "median": self.median, "min": self.min, "max": self.max, "runs": self.runs })
    }
}

/// Runs the benchmarks and prints the table (and JSON if asked).
pub fn run(quick: bool, json_out: Option<&Path>) -> Result<()> {
    let (hutch, agent_bin) = build_bins("release")?;
    let agent = LocalAgent::start(&agent_bin)?;
    let runs = if quick { 30 } else { 200 };
    let mut report = serde_json::Map::new();
    println!("hutch bench ({} runs per latency figure; local agent on a Unix socket; release build)\n", runs);
    println!("{:<44} {:>12} {:>12} {:>12}   anchor / ratio", "figure", "median", "min", "max");

    // Exec latency: the whole `hutch exec -- true` process vs `/bin/true`.
    let true_bin = which("true")?;
    let local = Stats::of(time_runs(runs, || Command::new(&true_bin).status().map(|_| ()))?);
    let remote = Stats::of(time_runs(runs, || {
        let status = Command::new(&hutch).args(["exec", "--", "true"]).env("HUTCH_ADDR", &agent.addr).stdin(Stdio::null()).status()?;
        if status.success() { Ok(()) } else { Err(std::io::Error::other(format!("hutch exec failed: {status}"))) }
    })?);
    row(
        "hutch exec -- true (whole CLI)",
        &remote,
        "ms",
        &format!("/bin/true {:.3} ms: {:.1}x", local.median, remote.median / local.median),
    );
    row("/bin/true (process spawn)", &local, "ms", "");
    report.insert("exec_true_ms".into(), remote.json("ms"));
    report.insert("bin_true_ms".into(), local.json("ms"));

    // Throughput: bytes of stdout through exec into a pipe we drain.
    let bytes: u64 = if quick { 256 << 20 } else { 1 << 30 };
    let count = if quick { 3 } else { 5 };
    let head = format!("head -c {bytes} /dev/zero");
    let through =
        Stats::of(time_runs(count, || drain(Command::new(&hutch).args(["exec", "--", "sh", "-c", &head]).env("HUTCH_ADDR", &agent.addr)))?);
    let direct = Stats::of(time_runs(count, || drain(Command::new("sh").args(["-c", &head])))?);
    let gbps = |s: &Stats| bytes as f64 / (s.median / 1000.0) / 1e9;
    let through_gbps = gbps(&through);
    let direct_gbps = gbps(&direct);
    row(
        &format!("stdout {} MiB through exec", bytes >> 20),
        &through,
        "ms",
        &format!("{through_gbps:.2} GB/s; local pipe {direct_gbps:.2} GB/s: {:.2}x", through_gbps / direct_gbps),
    );
    report.insert("stdout_throughput_gbps".into(), json!({ "hutch": through_gbps, "local_pipe": direct_gbps, "bytes": bytes }));

    // Agent memory: idle, then with 50 execs in flight.
    let idle = rss_kib(agent.pid())?;
    let mut children = Vec::new();
    for _ in 0..50 {
        children.push(
            Command::new(&hutch)
                .args(["exec", "--", "sh", "-c", "echo started; read line"])
                .env("HUTCH_ADDR", &agent.addr)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    for child in &mut children {
        // Each exec has started once its first line is out.
        let mut first = [0u8; 8];
        child.stdout.as_mut().ok_or("no stdout")?.read_exact(&mut first)?;
    }
    let busy = rss_kib(agent.pid())?;
    for mut child in children {
        drop(child.stdin.take());
        child.wait()?;
    }
    println!(
        "{:<44} {:>9.1} MiB idle, {:.1} MiB with 50 execs in flight (goal: <= 8 MiB idle)",
        "hutch-agent RSS",
        idle / 1024.0,
        busy / 1024.0
    );
    report.insert("agent_rss_kib".into(), json!({ "idle": idle, "busy_50": busy }));

    if let Some(path) = json_out {
        std::fs::write(path, serde_json::to_string_pretty(&Value::Object(report))?)?;
        println!("\nJSON written to {}", path.display());
    }
    Ok(())
}

fn row(figure: &str, s: &Stats, unit: &str, anchor: &str) {
    println!("{figure:<44} {:>9.3} {unit} {:>9.3} {unit} {:>9.3} {unit}   {anchor}", s.median, s.min, s.max);
}

/// Times `runs` calls of `f`, after one warm-up call, in milliseconds.
fn time_runs(runs: usize, mut f: impl FnMut() -> std::io::Result<()>) -> Result<Vec<f64>> {
    f()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let begin = Instant::now();
        f()?;
        samples.push(begin.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(samples)
}

/// Runs `cmd` with stdout into a pipe that is read and discarded.
fn drain(cmd: &mut Command) -> std::io::Result<()> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
    let mut out = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut buf = vec![0u8; 1 << 20];
    while out.read(&mut buf)? > 0 {}
    let status = child.wait()?;
    if status.success() { Ok(()) } else { Err(std::io::Error::other(format!("{status}"))) }
}

fn rss_kib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

fn which(name: &str) -> Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found in PATH").into())
}
