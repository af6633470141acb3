//! Flags of `--ro` snapshot commands: `hutch sync`, `hutch diff`.

use std::path::PathBuf;

use clap::Args;

use super::*;
use crate::error::Error;
use crate::state::VmName;
use crate::sync::{self, Source};
use crate::target::Target;

/// Which snapshot `sync`/`diff` act on.
#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// The VM (default: --addr/HUTCH_ADDR if set, else the VM of the current workspace).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// Which agent: a VM by name, or one by address.
    #[command(flatten)]
    pub agent: AgentArgs,

    /// With --addr: the host folder to snapshot (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// With --addr: include `.git`.
    #[arg(long)]
    pub ro_git: bool,

    /// With --addr: ignore .gitignore and .hutchignore.
    #[arg(long)]
    pub no_ignore: bool,
}

impl SnapshotArgs {
    /// The agent and the snapshot source for `sync`/`diff`: a `--ro` VM's
    /// record, or, with `--addr`, the given (or current) folder and walk flags.
    pub fn resolve(&self) -> Result<(Target, Source), Error> {
        let target = self.agent.target(self.name.as_ref())?;
        let source = match target.record() {
            Some(record) if record.sync => {
                let root = record.workspace.clone().ok_or_else(|| Error::Usage(format!("VM {} has no workspace", record.name)))?;
                Source { root, rules: crate::sync::live::daemon::rules(record) }
            }
            Some(record) => {
                let Some(ro) = record.ro else {
                    return Err(Error::Usage(format!(
                        "VM {} shares its workspace with the host (no --ro snapshot): there is nothing to sync",
                        record.name
                    )));
                };
                let root = record.workspace.clone().ok_or_else(|| Error::Usage(format!("VM {} has no workspace", record.name)))?;
                sync::source(&root, ro.git, ro.no_ignore)
            }
            None => {
                let root = crate::workspace::resolve(self.workspace.as_deref())?;
                sync::source(&root, self.ro_git, self.no_ignore)
            }
        };
        Ok((target, source))
    }
}

/// `hutch sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Which `--ro` VM's snapshot.
    #[command(flatten)]
    pub snapshot: SnapshotArgs,

    /// Print nothing (and no progress bar).
    #[arg(short, long)]
    pub quiet: bool,

    /// Print one JSON object with what was done.
    #[arg(long)]
    pub json: bool,

    /// Keep the agent's copy in step with the workspace both ways until Ctrl-C (a synced
    /// workspace in the foreground; VMs made with `--sync` have one running already).
    #[arg(long, conflicts_with = "ro_git")]
    pub watch: bool,
}

/// `hutch diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Which `--ro` VM's snapshot.
    #[command(flatten)]
    pub snapshot: SnapshotArgs,

    /// Apply the guest's changes to the host's files instead of printing a
    /// patch (paths checked as for the patch; a path the host changed too
    /// is left alone, and hutch exits 1).
    #[arg(long)]
    pub apply: bool,
}
