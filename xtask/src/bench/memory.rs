//! hutch-agent's memory: resident set size idle, and with 50 execs in flight.

use std::io::Read;
use std::process::{Child, Stdio};

use super::Setup;
use super::stats::Stats;
use super::table::{Goal, Table, Unit};
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS in /proc/PID/status")?;
    let kib: f64 = line.split_whitespace().nth(1).ok_or("bad VmRSS line")?.parse()?;
    Ok(kib / 1024.0)
}
