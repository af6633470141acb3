//! Exec as the unprivileged user: the default image's agent runs as root and
//! starts each command as the user `hutch` (`--exec-user`). Setting a
//! child's ids takes code between fork and exec, so std forks the agent for
//! it instead of using `posix_spawn` (vfork-like) as it does for the
//! agent's own user. These rows time `hutch exec -- true` against an agent
//! that runs commands as an unprivileged user beside one that runs them as
//! itself, in turn, so the ratio is the cost of that path.

use std::process::{Command, Stdio};

use hutch_tests::Agent;

use super::exec::{LATENCY_TURNS, run_ok};
use super::stats::{Contender, Stats, time_interleaved};
use super::table::{Table, Unit};
use super::{Plan, Setup};
use crate::workspace::Result;

/// The unprivileged user the bench's second agent runs commands as.
const USER: &str = "nobody";

/// Adds the row, or a note saying why it was skipped (the agent can only
/// change a command's user when it runs as root).
pub fn latency(table: &mut Table, plan: &Plan, setup: &Setup, agent_bin: &std::path::Path) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        table.note(format!("exec as an unprivileged user skipped: the agent must run as root to start commands as {USER}"));
        return Ok(());
    }
    let as_user = Agent::local(agent_bin, &["--exec-user", USER])?;
    let who = |addr: &str| -> Result<String> {
        let out = Command::new(&setup.hutch).args(["exec", "--", "id", "-un"]).env("HUTCH_ADDR", addr).stdin(Stdio::null()).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let (theirs, ours) = (who(&as_user.addr)?, who(&setup.agent.addr)?);
    if theirs != USER || ours != "root" {
        return Err(format!("the agents run commands as {theirs:?} and {ours:?}, not {USER} and root").into());
    }
    let exec_true = |addr: &str| {
        let mut cmd = Command::new(&setup.hutch);
        cmd.args(["exec", "--", "true"]).env("HUTCH_ADDR", addr).stdin(Stdio::null());
        cmd
    };
    let mut contenders = vec![
        Contender::new(plan.latency_runs, || run_ok(&mut exec_true(&as_user.addr))),
        Contender::new(plan.latency_runs, || run_ok(&mut exec_true(&setup.agent.addr))),
    ];
    let samples = time_interleaved(&mut contenders, LATENCY_TURNS)?;
    let stats = |i: usize| Stats::of(samples[i].clone()).ok_or("no samples");
    let user = stats(0)?;
    let figure = format!("hutch exec -- true, the command as {USER} (--exec-user: fork + exec in the agent)");
    table.figure("exec_true.exec_user", &figure, Unit::Ms, user.clone(), None);
    table.anchor("exec_true.exec_user.root", "the same, the command as the agent's own user (posix_spawn)", &user, stats(1)?, Unit::Ms);
    Ok(())
}
