//! hutch-agent's memory: resident set size idle, with 50 execs in flight,
//! and its peak while 100 detached sessions each print a lot with nobody
//! attached (each keeps only its 4 MiB buffer).

use std::io::Read;
use std::process::{Child, Stdio};

use super::exec::run_ok;
use super::stats::Stats;
use super::table::{Goal, Table, Unit};
use super::{Plan, Setup};
use crate::workspace::Result;

/// The agent is meant to stay under this much RSS when idle (MiB).
const IDLE_GOAL_MIB: f64 = 8.0;
/// Execs held open at once for the busy figure.
const CONCURRENT: usize = 50;

/// Adds the idle and busy RSS rows.
pub fn agent_rss(table: &mut Table, setup: &Setup) -> Result<()> {
    let pid = setup.agent.pid();
    let idle = rss_mib(pid)?;
    let goal = Goal { text: format!("≤ {IDLE_GOAL_MIB} MiB"), met: idle <= IDLE_GOAL_MIB };
    table.figure("agent_rss_idle", "hutch-agent RSS, idle", Unit::Mib, single(idle), Some(goal));

    let mut children = Vec::with_capacity(CONCURRENT);
    let result = hold_execs(setup, &mut children).and_then(|()| rss_mib(pid));
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    table.figure("agent_rss_busy", &format!("hutch-agent RSS, {CONCURRENT} execs in flight"), Unit::Mib, single(result?), None);
    Ok(())
}

/// Detached sessions for the sessions figure.
const SESSIONS: usize = 100;
/// Their default output buffer.
const SESSION_BUFFER_MIB: f64 = 4.0;

/// Adds the peak RSS while [`SESSIONS`] detached sessions each print
/// `plan.session_bytes` with nobody attached.
pub fn sessions_rss(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let blocks = (plan.session_bytes / (256 << 10)).to_string();
    let count = format!("count={blocks}");
    let tags: Vec<String> = (0..SESSIONS).map(|i| format!("bench-flood-{i}")).collect();
    for tag in &tags {
        let dd = ["dd", "if=/dev/zero", "bs=256k", count.as_str(), "status=none"];
        let mut cmd = std::process::Command::new(&setup.hutch);
        cmd.args(["exec", "--detach", "--tag", tag, "--"]).args(dd).env("HUTCH_ADDR", &setup.agent.addr);
        run_ok(cmd.stdin(Stdio::null()).stdout(Stdio::null()))?;
    }
    for tag in &tags {
        let mut cmd = std::process::Command::new(&setup.hutch);
        run_ok(cmd.args(["wait", tag]).env("HUTCH_ADDR", &setup.agent.addr).stdin(Stdio::null()))?;
    }
    let peak = status_mib(setup.agent.pid(), "VmHWM:")?;
    let bound = SESSION_BUFFER_MIB * SESSIONS as f64 + 16.0;
    let goal = Goal { text: format!("< {bound} MiB (buffers + 16)"), met: peak < bound };
    let figure = format!("hutch-agent peak RSS, {SESSIONS} detached sessions × {} MiB printed", plan.session_bytes >> 20);
    table.figure("agent_rss_sessions", &figure, Unit::Mib, single(peak), Some(goal));
    Ok(())
}

/// Starts the execs and waits until each has printed its first line.
fn hold_execs(setup: &Setup, children: &mut Vec<Child>) -> Result<()> {
    for _ in 0..CONCURRENT {
        let mut cmd = setup.hutch_exec(&["sh", "-c", "echo started; read line"]);
        children.push(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?);
    }
    for child in children.iter_mut() {
        let mut first = [0u8; 8];
        child.stdout.as_mut().ok_or("no stdout")?.read_exact(&mut first)?;
    }
    Ok(())
}

fn single(value: f64) -> Stats {
    Stats { median: value, min: value, max: value, runs: 1 }
}

fn rss_mib(pid: u32) -> Result<f64> {
    status_mib(pid, "VmRSS:")
}

/// A `/proc/PID/status` figure given in kB (`VmRSS:`, `VmHWM:`), in MiB.
fn status_mib(pid: u32, key: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(key)).ok_or_else(|| format!("no {key} in /proc/PID/status"))?;
    let kib: f64 = line.split_whitespace().nth(1).ok_or("bad /proc/PID/status line")?.parse()?;
    Ok(kib / 1024.0)
}
