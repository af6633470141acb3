//! `cargo xtask demo`: hutch's main job on any machine, no VM needed yet.

use std::process::Command;

use hutch_tests::Agent;

use crate::workspace::{Result, build_bins};

/// Runs `command` (default `uname -a`) through a fresh local agent; returns
/// hutch's exit code, which is the command's.
pub fn run(command: Vec<String>) -> Result<u8> {
    let command = if command.is_empty() { vec!["uname".into(), "-a".into()] } else { command };
    let (hutch, agent_bin) = build_bins("debug")?;
    let agent = Agent::local(&agent_bin, &[])?;
    eprintln!("xtask: agent {} on {}; running: hutch exec -- {}", agent.pid(), agent.addr, command.join(" "));
    let status = Command::new(&hutch).args(["exec", "--"]).args(&command).env("HUTCH_ADDR", &agent.addr).status()?;
    Ok(status.code().map_or(125, |c| c as u8))
}
