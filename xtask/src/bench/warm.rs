//! Warm starts and forks (`cargo xtask bench-warm`, and the end of `cargo
//! xtask bench`): the Debian default image, TCG, 1 vCPU.
//!
//! - `hutch run --rm -- true` taking a ready VM of the project's warm pool,
//!   beside `hutch run --rm --cold -- true` booting one, in turn. Before each
//!   timed run the pool is full and nothing boots in the background (`hutch
//!   warm --wait` waits for the keeper's refill), so both see the same idle
//!   machine: the ratio is the warm start's, not a measure of contention.
//! - `hutch fork` of a running VM into one and into four children, to all of
//!   them answering, beside a cold `hutch up` of the same image in the same
//!   run.
//! - What an idle ready VM and a fork child cost: the proportional set size
//!   (PSS, so guest RAM mapped by QEMU and by its vhost-user daemons counts
//!   once) of all their host processes, and their CPU while idle.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::Stats;
use super::table::{Goal, Table, Unit};
use super::{Plan, Setup};
use crate::workspace::{Result, target_dir};

/// Warm `run --rm -- true` is meant to be at least this many times faster than cold.
const WARM_GOAL: f64 = 10.0;
/// The fork's parent.
const PARENT: &str = "bench-parent";

/// Adds the warm-start and fork rows.
pub fn figures(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let images = target_dir().join("hutch-image");
    let Some(image) = ["default", "e2e-default"].iter().map(|d| images.join(d)).find(|d| d.join("image.json").exists()) else {
        table.note("warm-start rows skipped: no Debian image under target/hutch-image (run `cargo xtask image`)");
        return Ok(());
    };
    // Short paths: Unix socket paths are limited to 107 bytes.
    let state = tempfile::Builder::new().prefix("hbw").tempdir_in("/tmp")?;
    let ws = tempfile::Builder::new().prefix("hbw-ws").tempdir_in("/tmp")?;
    let bench = Bench { hutch: setup.hutch.clone(), state: state.path().to_path_buf(), image, ws: ws.path().to_path_buf() };
    let result = bench.run(table, plan);
    bench.quiet(&["warm", "--count", "0"]);
    for name in bench.vms() {
        bench.quiet(&["rm", "-f", &name]);
    }
    result
}

struct Bench {
    hutch: PathBuf,
    state: PathBuf,
    image: PathBuf,
    ws: PathBuf,
}

impl Bench {
    fn run(&self, table: &mut Table, plan: &Plan) -> Result<()> {
        // One untimed pair first: images into the page cache, the KVM verdict.
        self.ok(&["warm", "--count", "1", "--wait"])?;
        self.timed_run(false)?;
        self.ok(&["warm", "--count", "1", "--wait"])?;
        self.timed_run(true)?;
        let (mut warm, mut cold) = (Vec::new(), Vec::new());
        for _ in 0..plan.boots.max(3) {
            self.ok(&["warm", "--count", "1", "--wait"])?;
            warm.push(self.timed_run(false)?);
            self.ok(&["warm", "--count", "1", "--wait"])?;
            cold.push(self.timed_run(true)?);
        }
        let warm = Stats::of(warm).ok_or("no warm runs")?;
        let cold = Stats::of(cold).ok_or("no cold runs")?;
        let goal = Goal { text: format!("≥ {WARM_GOAL}× faster than cold"), met: cold.median >= WARM_GOAL * warm.median };
        table.figure("run_rm_warm", "hutch run --rm -- true, a ready VM of the warm pool (TCG)", Unit::Ms, warm.clone(), Some(goal));
        table.anchor("run_rm_warm.cold", "the same with --cold: a boot of its own, in turn", &warm, cold, Unit::Ms);

        // What a ready VM costs while it waits.
        let ready = self.pool_vm().ok_or("no ready VM")?;
        let idle = if plan.boots >= 3 { Duration::from_secs(60) } else { Duration::from_secs(20) };
        let (pss, cpu) = self.cost(&ready, idle)?;
        table.figure("ready_vm_pss", "memory of an idle ready VM (PSS of QEMU and its daemons)", Unit::Mib, single(pss), None);
        table
            .note(format!("an idle ready VM used {cpu:.1} % of one CPU over {} s (QEMU's timers, the guest's idle ticks)", idle.as_secs()));
        self.ok(&["warm", "--count", "0"])?;

        // Forks of a running VM, beside a cold `up`.
        let up = Instant::now();
        self.ok(&["up", "--name", PARENT, "--cpus", "1"])?;
        let up = ms(up);
        self.ok(&["exec", "--name", PARENT, "--", "sh", "-c", "echo prepared > ~/state"])?;
        let mut forks = Vec::new();
        for count in [1, 4] {
            let prefix = format!("bench-f{count}");
            let begin = Instant::now();
            self.ok(&["fork", PARENT, "--count", &count.to_string(), "--name-prefix", &prefix])?;
            forks.push(ms(begin));
            if count == 4 {
                let (pss, _) = self.cost(&format!("{prefix}-1"), Duration::ZERO)?;
                table.figure("fork_child_pss", "memory of a fork child, one of four (PSS)", Unit::Mib, single(pss), None);
            }
            for n in 1..=count {
                self.ok(&["rm", "-f", &format!("{prefix}-{n}")])?;
            }
        }
        let cold_up = single(up);
        table.figure("fork_1", "hutch fork of a running VM, 1 child, to its agent answering", Unit::Ms, single(forks[0]), None);
        table.anchor("fork_1.up", "hutch up of a new VM of the image (cold)", &single(forks[0]), cold_up.clone(), Unit::Ms);
        table.figure("fork_4", "the same, 4 children at once", Unit::Ms, single(forks[1]), None);
        table.anchor("fork_4.up", "hutch up of a new VM of the image (cold)", &single(forks[1]), cold_up, Unit::Ms);
        Ok(())
    }

    /// A `hutch` command in the bench's state, image, project and settings.
    fn hutch(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.hutch);
        cmd.args(args)
            .current_dir(&self.ws)
            .env("HUTCH_STATE_DIR", &self.state)
            .env("HUTCH_IMAGE", &self.image)
            .env_remove("HUTCH_ADDR")
            .stdin(Stdio::null());
        // The settings of every VM here (not for commands that take a VM by name).
        if matches!(args.first().copied(), Some("warm" | "run")) {
            cmd.args(["--cpus", "1"]);
        }
        cmd
    }

    fn ok(&self, args: &[&str]) -> Result<()> {
        let out = self.hutch(args).stdout(Stdio::null()).output()?;
        if out.status.success() { Ok(()) } else { Err(format!("hutch {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()).into()) }
    }

    fn quiet(&self, args: &[&str]) {
        let _ = self.hutch(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }

    /// `hutch run --rm -- true` (with `--cold`), in milliseconds.
    fn timed_run(&self, cold: bool) -> Result<f64> {
        let mut args = vec!["run", "--rm"];
        if cold {
            args.push("--cold");
        }
        let mut cmd = self.hutch(&args);
        cmd.args(["--", "true"]).stdout(Stdio::null());
        let begin = Instant::now();
        let status = cmd.status()?;
        let took = ms(begin);
        if status.success() { Ok(took) } else { Err(format!("hutch run --rm failed: {status}").into()) }
    }

    /// Every VM of the bench's state.
    fn vms(&self) -> Vec<String> {
        std::fs::read_dir(self.state.join("vms"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A ready VM of the pool.
    fn pool_vm(&self) -> Option<String> {
        self.vms().into_iter().find(|name| name.starts_with("warm-"))
    }

    /// The PSS (MiB) of VM `name`'s host processes now, and the share of
    /// one CPU they use over `idle` (0 when `idle` is zero).
    fn cost(&self, name: &str, idle: Duration) -> Result<(f64, f64)> {
        let needle = self.state.join("vms").join(name);
        let pids = processes_of(&needle);
        if pids.is_empty() {
            return Err(format!("no processes for VM {name}").into());
        }
        let pss: f64 = pids.iter().map(|pid| pss_kib(*pid)).sum::<f64>() / 1024.0;
        if idle.is_zero() {
            return Ok((pss, 0.0));
        }
        let before: u64 = pids.iter().map(|pid| cpu_ticks(*pid)).sum();
        let begin = Instant::now();
        std::thread::sleep(idle); // the measurement window itself
        let after: u64 = pids.iter().map(|pid| cpu_ticks(*pid)).sum();
        let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        Ok((pss, (after.saturating_sub(before)) as f64 / ticks_per_s / begin.elapsed().as_secs_f64() * 100.0))
    }
}

/// Pids of live processes whose command line names `dir` (QEMU, its vsock
/// device, virtiofsd and its sandboxed child).
fn processes_of(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // The folder itself, not a sibling whose name starts the same.
            (cmdline.contains(&format!("{needle}/"))).then_some(pid)
        })
        .collect()
}

/// `Pss:` of `/proc/PID/smaps_rollup`, in KiB (0 when unreadable).
fn pss_kib(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

/// utime + stime of `/proc/PID/stat`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends at the last ')'.
    let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn single(value: f64) -> Stats {
    Stats { median: value, min: value, max: value, runs: 1 }
}
