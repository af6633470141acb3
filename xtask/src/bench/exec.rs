//! Exec figures: the latency of a whole `hutch exec -- true` process and the
//! stdout throughput of one exec, each beside its local and SSH anchors.

use std::io::Read;
use std::process::{Command, Stdio};

use super::stats::{Contender, Stats, Turns, throughput_gbps, time_interleaved};
use super::table::{Goal, Table, Unit};
use super::{Plan, Setup};
use crate::workspace::Result;

/// `hutch exec -- true` is meant to take at most this long (ms).
const EXEC_TRUE_GOAL_MS: f64 = 3.0;
/// ... and to be at least this many times faster than a fresh `ssh host true`.
const FRESH_SSH_GOAL: f64 = 100.0;
/// Stdout through exec is meant to reach this many GB/s.
const THROUGHPUT_GOAL_GBPS: f64 = 1.0;

/// Latency figures take turns of 10 calls, each turn after one untimed call
/// (see [`Turns`]); throughput runs are long enough to alternate one by one.
pub const LATENCY_TURNS: Turns = Turns { block: 10, settle: true };

/// `hutch exec -- true` beside `/bin/true`, a fresh `ssh host true` and `ssh`
/// through a ControlMaster, all timed in turn (see [`time_interleaved`]).
pub fn latency(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let true_bin = which("true")?;
    let ssh = match &setup.sshd {
        Ok(sshd) => Ok((sshd, sshd.master()?)),
        Err(why) => Err(why),
    };
    let runs = plan.latency_runs;
    let mut contenders = Vec::new();
    let hutch = enter(&mut contenders, runs, || run_ok(setup.hutch_exec(&["true"]).stdin(Stdio::null())));
    let local = enter(&mut contenders, runs, || run_ok(Command::new(&true_bin).stdin(Stdio::null())));
    let dynamic = setup.hutch_dynamic.as_ref().map(|dynamic| {
        enter(&mut contenders, runs, move || {
            let mut cmd = Command::new(dynamic);
            cmd.args(["exec", "--", "true"]).env("HUTCH_ADDR", &setup.agent.addr).stdin(Stdio::null());
            run_ok(&mut cmd)
        })
    });
    let ssh = ssh.as_ref().map(|(sshd, master)| {
        let fresh = enter(&mut contenders, plan.ssh_fresh_runs, || run_ok(sshd.fresh(&["true"]).stdin(Stdio::null())));
        let muxed = enter(&mut contenders, runs, || run_ok(master.command(&["true"]).stdin(Stdio::null())));
        (fresh, muxed)
    });
    let samples = time_interleaved(&mut contenders, LATENCY_TURNS)?;
    let stats = |i: usize| Stats::of(samples[i].clone()).ok_or("no samples");

    let hutch = stats(hutch)?;
    let goal = Goal { text: format!("≤ {EXEC_TRUE_GOAL_MS} ms"), met: hutch.median <= EXEC_TRUE_GOAL_MS };
    table.figure("exec_true", "hutch exec -- true (whole CLI, unix agent)", Unit::Ms, hutch.clone(), Some(goal));
    if let Some(dynamic) = dynamic {
        table.anchor(
            "exec_true.dynamic",
            "the plain release build, dynamically linked (cargo install --path host)",
            &hutch,
            stats(dynamic)?,
            Unit::Ms,
        );
    }
    table.anchor("exec_true.bin_true", "/bin/true (local process)", &hutch, stats(local)?, Unit::Ms);
    match ssh {
        Ok((fresh, muxed)) => {
            let advantage = table.anchor("exec_true.ssh_fresh", "ssh host true (fresh connection)", &hutch, stats(fresh)?, Unit::Ms);
            table.goal_on_last(Goal { text: format!("≥ {FRESH_SSH_GOAL}× faster"), met: advantage >= FRESH_SSH_GOAL });
            table.anchor("exec_true.ssh_control_master", "ssh host true (over a ControlMaster)", &hutch, stats(muxed)?, Unit::Ms);
        }
        Err(why) => table.note(format!("ssh rows for `exec -- true` skipped: {why}")),
    }
    Ok(())
}

/// Stdout of `head -c N /dev/zero` through hutch, beside the same command into
/// a local pipe and through `ssh host`, timed in turn.
pub fn throughput(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let bytes = plan.stream_bytes;
    let count = bytes.to_string();
    let head = ["head", "-c", count.as_str(), "/dev/zero"];
    let runs = plan.stream_runs;
    let mut contenders = Vec::new();
    let hutch = enter(&mut contenders, runs, || drain(&mut setup.hutch_exec(&head)));
    let local = enter(&mut contenders, runs, || drain(Command::new(head[0]).args(&head[1..])));
    let ssh = setup.sshd.as_ref().map(|sshd| enter(&mut contenders, runs, || drain(&mut sshd.fresh(&head))));
    let samples = time_interleaved(&mut contenders, Turns { block: 1, settle: false })?;
    let rate = |i: usize| Stats::of(throughput_gbps(bytes, &samples[i])).ok_or("no samples");

    let hutch = rate(hutch)?;
    let goal = Goal { text: format!("≥ {THROUGHPUT_GOAL_GBPS} GB/s"), met: hutch.median >= THROUGHPUT_GOAL_GBPS };
    let figure = format!("stdout of {} through exec", size(bytes));
    table.figure("stdout", &figure, Unit::Gbps, hutch.clone(), Some(goal));
    table.anchor("stdout.local_pipe", "the same command into a local pipe", &hutch, rate(local)?, Unit::Gbps);
    match ssh {
        Ok(ssh) => {
            table.anchor("stdout.ssh", "ssh host head -c N /dev/zero", &hutch, rate(ssh)?, Unit::Gbps);
        }
        Err(why) => table.note(format!("ssh row for stdout throughput skipped: {why}")),
    }
    Ok(())
}

/// Adds a contender; returns its index in [`time_interleaved`]'s result.
fn enter<'a>(contenders: &mut Vec<Contender<'a>>, runs: usize, call: impl FnMut() -> Result<()> + 'a) -> usize {
    contenders.push(Contender::new(runs, call));
    contenders.len() - 1
}

/// Runs `cmd` to completion and fails unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Result<()> {
    let status = cmd.status()?;
    if status.success() { Ok(()) } else { Err(format!("{:?} failed: {status}", cmd.get_program()).into()) }
}

/// Runs `cmd` with stdout into a pipe that is read and discarded.
fn drain(cmd: &mut Command) -> Result<()> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut buf = vec![0u8; 1 << 20];
    while out.read(&mut buf)? > 0 {}
    let status = child.wait()?;
    if status.success() { Ok(()) } else { Err(format!("{:?} failed: {status}", cmd.get_program()).into()) }
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 { format!("{} GiB", bytes >> 30) } else { format!("{} MiB", bytes >> 20) }
}

fn which(name: &str) -> Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found in PATH").into())
}
