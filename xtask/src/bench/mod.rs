//! `cargo xtask bench`: hutch's speed claims, each measured beside an anchor
//! in the same run, so the ratio means something on any machine.
//!
//! The run starts what it needs and stops it afterwards: a release-build
//! hutch-agent on a private Unix socket ([`hutch_tests::agent`]) and, when
//! Debian's openssh-server is installed, a private sshd on 127.0.0.1 (see
//! [`ssh`]). One module per kind
//! of figure: [`exec`] (latency, throughput), [`exec_user`] (exec as an
//! unprivileged user against the agent's own), [`attach`] (attach to first
//! byte), [`pty`] (echo round trip), [`memory`] (agent RSS), [`vm`] (a QEMU
//! guest, when the image is built), [`workspace`] (the shared and the synced
//! workspace in a guest against a VM-local copy), [`net`] (the egress proxy:
//! first-byte latency, downloads into a guest), [`warm`] (warm `run --rm`
//! beside a cold one, forks, what a ready VM costs);
//! [`table`] prints and serialises the rows.

mod attach;
mod exec;
mod exec_user;
mod git;
mod memory;
mod net;
mod pty;
mod ssh;
mod stats;
mod table;
mod vm;
mod warm;
mod workspace;

use std::path::{Path, PathBuf};
use std::process::Command;

use hutch_tests::Agent;
use serde_json::json;

use crate::workspace::{Result, build_bins};
use ssh::Anchor;
use table::{Table, Unit};

/// How much to measure: `--quick` for a look, the default for figures to publish.
pub struct Plan {
    /// Runs per latency figure (hutch, /bin/true, ssh over a ControlMaster).
    pub latency_runs: usize,
    /// Runs of a fresh `ssh host true` (each costs a key exchange).
    pub ssh_fresh_runs: usize,
    /// Bytes of stdout per throughput run.
    pub stream_bytes: u64,
    /// Runs per throughput figure.
    pub stream_runs: usize,
    /// PTY echo round trips per figure.
    pub echoes: usize,
    /// QEMU guest boots timed.
    pub boots: usize,
    /// Bytes each detached session prints for the sessions memory figure.
    pub session_bytes: u64,
    /// Timed runs of each workspace operation on the 5k-file repository
    /// (and first copies of the synced workspace).
    pub workspace_runs: usize,
    /// Small edits timed in each direction in the synced workspace.
    pub sync_edits: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                latency_runs: 30,
                ssh_fresh_runs: 10,
                stream_bytes: 256 << 20,
                stream_runs: 3,
                echoes: 200,
                boots: 1,
                session_bytes: 256 << 20,
                workspace_runs: 1,
                sync_edits: 5,
            }
        } else {
            Plan {
                latency_runs: 200,
                ssh_fresh_runs: 30,
                stream_bytes: 1 << 30,
                stream_runs: 5,
                echoes: 1000,
                boots: 3,
                session_bytes: 1 << 30,
                workspace_runs: 3,
                sync_edits: 20,
            }
        }
    }
}

/// What the figures run against.
pub struct Setup {
    /// The `hutch` binary as `cargo xtask install` builds it (static on Linux/glibc).
    pub hutch: PathBuf,
    /// The plain release build (`cargo install --path host`), when it differs.
    pub hutch_dynamic: Option<PathBuf>,
    /// The local agent.
    pub agent: Agent,
    /// The private sshd, or why there is none.
    pub sshd: std::result::Result<Anchor, String>,
}

impl Setup {
    /// `hutch exec -- ARGS…` against the local agent.
    pub fn hutch_exec(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.hutch);
        cmd.args(["exec", "--"]).args(args).env("HUTCH_ADDR", &self.agent.addr);
        cmd
    }
}

/// Runs the benchmarks, prints the table and writes JSON if asked.
pub fn run(quick: bool, json_out: Option<&Path>) -> Result<()> {
    let (plain, agent_bin) = build_bins("release")?;
    let hutch = crate::install::build_host_cli()?;
    let hutch_dynamic = (hutch != plain).then_some(plain);
    let plan = Plan::new(quick);
    let setup = Setup { hutch, hutch_dynamic, agent: Agent::local(&agent_bin, &[])?, sshd: Anchor::start() };
    println!(
        "hutch bench{}: {}; hutch CLI as `cargo xtask install` builds it{}; local agent on a Unix socket{}\n",
        if quick { " --quick" } else { "" },
        machine(),
        if crate::install::STATIC_HOST { " (dist profile: full LTO, statically linked)" } else { " (release)" },
        if setup.sshd.is_ok() { "; sshd on 127.0.0.1" } else { "" }
    );

    let mut table = Table::default();
    exec::latency(&mut table, &plan, &setup)?;
    exec_user::latency(&mut table, &plan, &setup, &agent_bin)?;
    attach::first_byte(&mut table, &plan, &setup)?;
    exec::throughput(&mut table, &plan, &setup)?;
    echo(&mut table, &plan, &setup)?;
    memory::agent_rss(&mut table, &setup)?;
    memory::sessions_rss(&mut table, &plan, &setup)?;
    vm::guest(&mut table, &plan, &setup)?;
    if let Err(e) = warm::figures(&mut table, &plan, &setup) {
        table.note(format!("warm-start rows stopped: {e}"));
    }
    if let Err(e) = net::figures(&mut table, &plan, &setup, &agent_bin) {
        table.note(format!("network rows stopped: {e}"));
    }
    table.print();
    // The workspace rows and the `--ro` sync rows (beside rsync, on a seeded
    // tree under target/) print their own tables.
    println!();
    let workspace = workspace::measure(&plan, &setup.hutch, &[])?;
    workspace.print();
    println!();
    let sync = crate::bench_sync::run(quick)?;

    if let Some(path) = json_out {
        let mut report = table.json();
        report["quick"] = json!(quick);
        report["workspace"] = workspace.json();
        report["sync"] = sync;
        report["machine"] = json!(machine());
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        println!("\nJSON written to {}", path.display());
    }
    Ok(())
}

/// Only the network rows ([`net`]), for a look at the proxy's cost without
/// the whole run.
pub fn run_net(quick: bool) -> Result<()> {
    let (setup, agent_bin) = section_setup("bench-net", quick)?;
    let mut table = Table::default();
    net::figures(&mut table, &Plan::new(quick), &setup, &agent_bin)?;
    table.print();
    Ok(())
}

/// What one section run alone needs (no sshd), with its heading printed;
/// and the agent binary.
fn section_setup(task: &str, quick: bool) -> Result<(Setup, PathBuf)> {
    let (plain, agent_bin) = build_bins("release")?;
    let hutch = crate::install::build_host_cli()?;
    let hutch_dynamic = (hutch != plain).then_some(plain);
    let setup = Setup { hutch, hutch_dynamic, agent: Agent::local(&agent_bin, &[])?, sshd: Err("not needed".into()) };
    println!("hutch {task}{}: {}\n", if quick { " --quick" } else { "" }, machine());
    Ok((setup, agent_bin))
}

/// Only the warm-start and fork rows ([`warm`]).
pub fn run_warm(quick: bool) -> Result<()> {
    let (setup, _) = section_setup("bench-warm", quick)?;
    let mut table = Table::default();
    warm::figures(&mut table, &Plan::new(quick), &setup)?;
    table.print();
    Ok(())
}

/// The git guard's cost (`cargo xtask bench-git`), see [`git`].
pub fn run_git(quick: bool) -> Result<()> {
    git::run(quick)
}

/// Only the exec latency rows ([`exec`], [`exec_user`]), for a look at the
/// exec path without the whole run.
pub fn run_exec(quick: bool) -> Result<()> {
    let (plain, agent_bin) = build_bins("release")?;
    let hutch = crate::install::build_host_cli()?;
    let hutch_dynamic = (hutch != plain).then_some(plain);
    let plan = Plan::new(quick);
    let setup = Setup { hutch, hutch_dynamic, agent: Agent::local(&agent_bin, &[])?, sshd: Anchor::start() };
    println!("hutch bench-exec{}: {}\n", if quick { " --quick" } else { "" }, machine());
    let mut table = Table::default();
    exec::latency(&mut table, &plan, &setup)?;
    exec_user::latency(&mut table, &plan, &setup, &agent_bin)?;
    table.print();
    Ok(())
}

/// Only the workspace section (`cargo xtask bench-workspace`).
pub fn run_workspace(quick: bool, only: &[String], json_out: Option<&Path>) -> Result<()> {
    let hutch = crate::install::build_host_cli()?;
    let only_text = if only.is_empty() { String::new() } else { format!(" --only {}", only.join(",")) };
    println!("hutch bench-workspace{}{only_text}: {}\n", if quick { " --quick" } else { "" }, machine());
    let section = workspace::measure(&Plan::new(quick), &hutch, only)?;
    section.print();
    if let Some(path) = json_out {
        std::fs::write(path, serde_json::to_string_pretty(&section.json())?)?;
    }
    Ok(())
}

/// PTY echo through hutch, and through `ssh -tt` when sshd is there.
fn echo(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let script = pty::remote_script(plan.echoes);
    let mut hutch_cmd = Command::new(&setup.hutch);
    hutch_cmd.args(["exec", "-t", "--", "sh", "-c", &script]).env("HUTCH_ADDR", &setup.agent.addr);
    let hutch = pty::echo_round_trips(hutch_cmd, plan.echoes)?;
    table.figure("pty_echo", "PTY echo round trip (hutch exec -t)", Unit::Ms, hutch.clone(), None);
    match &setup.sshd {
        Ok(sshd) => {
            let stats = pty::echo_round_trips(sshd.fresh_tty(&[&script]), plan.echoes)?;
            table.anchor("pty_echo.ssh", "ssh -tt host (same remote command)", &hutch, stats, Unit::Ms);
        }
        Err(why) => table.note(format!("ssh row for PTY echo skipped: {why}")),
    }
    Ok(())
}

/// "Linux 6.1.0 x86_64, 2 CPUs": enough to tell machines apart.
fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_else(|_| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{} {} {}, {cpus} CPUs", read("/proc/sys/kernel/ostype"), read("/proc/sys/kernel/osrelease"), std::env::consts::ARCH)
}
