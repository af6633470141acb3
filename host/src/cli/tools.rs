//! Flags of the helper commands: doctor, config, completions, forward.

use clap::Args;

use super::*;
use crate::forward::PortMapping;
use crate::state::VmName;

/// `hutch doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The VM to check (default: --addr/HUTCH_ADDR if set, else the current workspace's VM).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// Which agent: a VM by name, or one by address.
    #[command(flatten)]
    pub agent: AgentArgs,

    /// Print a JSON array of checks.
    #[arg(long)]
    pub json: bool,
}

/// `hutch config`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `hutch completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `hutch forward`.
#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// The VM to forward to (default: --addr/HUTCH_ADDR if set, else the current workspace's VM).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// Which agent: a VM by name, or one by address.
    #[command(flatten)]
    pub agent: AgentArgs,

    /// Ports to forward: 127.0.0.1:HOSTPORT on this machine to GUESTPORT (default: HOSTPORT)
    /// on the guest's 127.0.0.1.
    #[arg(required = true, value_name = "HOSTPORT[:GUESTPORT]")]
    pub ports: Vec<PortMapping>,
}
