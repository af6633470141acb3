//! Flags of the git commands: `hutch fetch`, and the hidden helpers the
//! guard runs (`guard-exec`, `git-bridge`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

use super::*;
use crate::state::VmName;

/// `hutch fetch`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The VM (default: --addr/HUTCH_ADDR if set, else the VM of the current workspace).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// Which agent: a VM by name, or one by address.
    #[command(flatten)]
    pub agent: AgentArgs,

    /// With --addr: the host repository's worktree (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// With --addr: the gitdir to fetch from on the agent's machine (default: WORKSPACE/.git).
    #[arg(long, value_name = "PATH")]
    pub guest_gitdir: Option<PathBuf>,

    /// With --addr: the name the refused refs are kept under (`refs/hutch/NAME/…`).
    #[arg(long, value_name = "NAME", default_value = "agent")]
    pub keep_as: VmName,
}

/// `hutch guard-exec` (started by hutch itself).
#[derive(Args, Debug)]
pub struct GuardExecArgs {
    /// The VM's guard plan.
    #[arg(long, value_name = "FILE")]
    pub guard: PathBuf,

    /// The program to run in the namespace, and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

/// `hutch git-bridge` (run by host git through its `ext::` transport).
#[derive(Args, Debug)]
pub struct GitBridgeArgs {
    /// The service git asks for (only `git-upload-pack` is served).
    pub service: String,
}
