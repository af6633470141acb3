//! Exec figures: the latency of a whole `hutch exec -- true` process and the
//! stdout throughput of one exec, each beside its local and SSH anchors.

use std::io::Read;
use std::process::{Command, Stdio};

use super::stats::{Stats, throughput_gbps, time_runs};
use super::table::{Goal, Table, Unit};
use super::{Plan, Setup};
use crate::workspace::Result;

/// `hutch exec -- true` is meant to take at most this long (ms).
const EXEC_TRUE_GOAL_MS: f64 = 3.0;
/// ... and to be at least this many times faster than a fresh `ssh host true`.
const FRESH_SSH_GOAL: f64 = 100.0;
/// Stdout through exec is meant to reach this many GB/s.
const THROUGHPUT_GOAL_GBPS: f64 = 1.0;

/// `hutch exec -- true` beside `/bin/true`, a fresh `ssh host true` and `ssh`
/// through a ControlMaster.
pub fn latency(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let hutch = measure(plan.latency_runs, || run_ok(setup.hutch_exec(&["true"]).stdin(Stdio::null())))?;
    let goal = Goal { text: format!("≤ {EXEC_TRUE_GOAL_MS} ms"), met: hutch.median <= EXEC_TRUE_GOAL_MS };
    table.figure("exec_true", "hutch exec -- true (whole CLI, unix agent)", Unit::Ms, hutch.clone(), Some(goal));

    if let Some(dynamic) = &setup.hutch_dynamic {
        let linked = measure(plan.latency_runs, || {
            let mut cmd = Command::new(dynamic);
            cmd.args(["exec", "--", "true"]).env("HUTCH_ADDR", &setup.agent.addr).stdin(Stdio::null());
            run_ok(&mut cmd)
        })?;
        table.anchor("exec_true.dynamic", "the same, dynamically linked (cargo install --path host)", &hutch, linked, Unit::Ms);
    }

    let true_bin = which("true")?;
    let local = measure(plan.latency_runs, || run_ok(Command::new(&true_bin).stdin(Stdio::null())))?;
    table.anchor("exec_true.bin_true", "/bin/true (local process)", &hutch, local, Unit::Ms);

    match &setup.sshd {
        Ok(sshd) => {
            let fresh = measure(plan.ssh_fresh_runs, || run_ok(sshd.fresh(&["true"]).stdin(Stdio::null())))?;
            let advantage = table.anchor("exec_true.ssh_fresh", "ssh host true (fresh connection)", &hutch, fresh, Unit::Ms);
            table.goal_on_last(Goal { text: format!("≥ {FRESH_SSH_GOAL}× faster"), met: advantage >= FRESH_SSH_GOAL });
            let master = sshd.master()?;
            let muxed = measure(plan.latency_runs, || run_ok(master.command(&["true"]).stdin(Stdio::null())))?;
            table.anchor("exec_true.ssh_control_master", "ssh host true (over a ControlMaster)", &hutch, muxed, Unit::Ms);
        }
        Err(why) => table.note(format!("ssh rows for `exec -- true` skipped: {why}")),
    }
    Ok(())
}

/// Stdout of `head -c N /dev/zero` through hutch, beside the same command into
/// a local pipe and through `ssh host`.
pub fn throughput(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let bytes = plan.stream_bytes;
    let count = bytes.to_string();
    let head = ["head", "-c", count.as_str(), "/dev/zero"];
    let rate = |cmd: &mut dyn FnMut() -> Command| -> Result<Stats> {
        let millis = time_runs(plan.stream_runs, || drain(&mut cmd()))?;
        Stats::of(throughput_gbps(bytes, &millis)).ok_or_else(|| "no samples".into())
    };

    let hutch = rate(&mut || setup.hutch_exec(&head))?;
    let goal = Goal { text: format!("≥ {THROUGHPUT_GOAL_GBPS} GB/s"), met: hutch.median >= THROUGHPUT_GOAL_GBPS };
    let figure = format!("stdout of {} through exec", size(bytes));
    table.figure("stdout", &figure, Unit::Gbps, hutch.clone(), Some(goal));

    let local = rate(&mut || {
        let mut cmd = Command::new(head[0]);
        cmd.args(&head[1..]);
        cmd
    })?;
    table.anchor("stdout.local_pipe", "the same command into a local pipe", &hutch, local, Unit::Gbps);

    match &setup.sshd {
        Ok(sshd) => {
            let ssh = rate(&mut || sshd.fresh(&head))?;
            table.anchor("stdout.ssh", "ssh host head -c N /dev/zero", &hutch, ssh, Unit::Gbps);
        }
        Err(why) => table.note(format!("ssh row for stdout throughput skipped: {why}")),
    }
    Ok(())
}

pub fn measure(runs: usize, f: impl FnMut() -> Result<()>) -> Result<Stats> {
    Stats::of(time_runs(runs, f)?).ok_or_else(|| "no samples".into())
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
