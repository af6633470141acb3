//! Flags of `--ro` snapshot commands: `hutch sync`, `hutch diff`.

use std::path::PathBuf;

use clap::Args;

use super::*;
use crate::state::VmName;

/// Which snapshot `sync`/`diff` act on.
#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// The VM (default: --addr/HUTCH_ADDR if set, else the VM of the current workspace).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

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

/// `hutch sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub snapshot: SnapshotArgs,

    /// Print nothing (and no progress bar).
    #[arg(short, long)]
    pub quiet: bool,

    /// Print one JSON object with what was done.
    #[arg(long)]
    pub json: bool,
}

/// `hutch diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
}
