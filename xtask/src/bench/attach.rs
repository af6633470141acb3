//! `hutch attach` to its first byte on a running session, beside `hutch exec
//! -- true` on the same agent, timed in turn.
//!
//! The session is what people reattach to: a program on a PTY that redraws
//! on SIGWINCH (a shell loop with a trap, here). Each call starts `hutch
//! attach`, which takes the writer's seat and has the agent nudge a redraw;
//! the time is until the first byte of it reaches attach's stdout. Then
//! SIGTERM makes attach detach (untimed), which frees the seat for the next.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::exec::{LATENCY_TURNS, run_ok};
use super::stats::{Contender, Stats, time_interleaved};
use super::table::{Goal, Table, Unit};
use super::{Plan, Setup};
use crate::workspace::Result;

/// `hutch attach` to first byte is meant to be within this of `exec -- true` (ms).
const ATTACH_GOAL_MS: f64 = 2.0;

/// The session's tag.
const TAG: &str = "bench-attach";

/// Times `hutch attach` to first byte beside `hutch exec -- true`.
pub fn first_byte(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let hutch = |args: &[&str]| {
        let mut cmd = Command::new(&setup.hutch);
        cmd.args(args).env("HUTCH_ADDR", &setup.agent.addr).stdin(Stdio::null());
        cmd
    };
    let redraw = "trap 'echo redraw' WINCH; while :; do sleep 1 & wait $!; done";
    run_ok(hutch(&["exec", "--detach", "-t", "--tag", TAG, "--", "sh", "-c", redraw]).stdout(Stdio::null()))?;
    let attach = || -> Result<f64> {
        let begin = Instant::now();
        let mut child = hutch(&["attach", TAG]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let mut first = [0u8; 1];
        let read = child.stdout.take().ok_or("no stdout")?.read(&mut first);
        let took = begin.elapsed().as_secs_f64() * 1000.0;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let status = child.wait()?;
        match read {
            Ok(1) if status.success() => Ok(took),
            _ => Err(format!("hutch attach gave no output ({read:?}) or failed ({status})").into()),
        }
    };
    let runs = plan.latency_runs;
    let mut contenders = vec![Contender::self_timed(runs, attach), Contender::new(runs, || run_ok(&mut hutch(&["exec", "--", "true"])))];
    let samples = time_interleaved(&mut contenders, LATENCY_TURNS);
    drop(contenders);
    let _ = hutch(&["kill", "-s", "KILL", TAG]).status();
    let samples = samples?;
    let stats = |i: usize| Stats::of(samples[i].clone()).ok_or("no samples");
    let (attach, exec) = (stats(0)?, stats(1)?);
    let goal = Goal { text: format!("≤ exec true + {ATTACH_GOAL_MS} ms"), met: attach.median <= exec.median + ATTACH_GOAL_MS };
    table.figure("attach_first_byte", "hutch attach to first byte (PTY session, redraw)", Unit::Ms, attach.clone(), Some(goal));
    table.anchor("attach_first_byte.exec_true", "hutch exec -- true (same agent, same run)", &attach, exec, Unit::Ms);
    Ok(())
}
