//! Flags of the VM lifecycle commands: up, run, shell, rm, ls.

use std::path::PathBuf;

use clap::Args;

use super::*;
use crate::forward::PortMapping;
use crate::state::{BackendKind, VmName};

/// How to create and start a VM.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// VM name (default: derived from the workspace folder).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// VM manager [default: qemu, or `backend` in hutch.toml / config.toml].
    #[arg(long, value_enum, env = "HUTCH_BACKEND")]
    pub backend: Option<BackendKind>,

    /// Base image (QEMU: `minimal` or another NAME installed by `cargo xtask image` or made by `hutch image prepare`, a folder, or a disk file; default: the installed Debian image).
    #[arg(long, env = "HUTCH_IMAGE", value_name = "IMG")]
    pub image: Option<String>,

    /// Virtual CPUs [default: 2, or `cpus` in the configuration].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub cpus: Option<u32>,

    /// Memory in MiB [default: 1024, or `memory` in the configuration].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub memory: Option<u32>,

    /// Size of the VM's disk, e.g. 40G (sparse; at least the image's own, 20G for the default image;
    /// `disk` in the configuration). Only when the VM is created.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_size)]
    pub disk: Option<u64>,

    /// Host folder shared into the guest at the same path (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// Share no folder with the guest.
    #[arg(long, conflicts_with = "workspace")]
    pub no_workspace: bool,

    /// Also keep dirs with this name on VM-local disk (repeatable; the defaults are
    /// node_modules, .next, .svelte-kit, .venv and target, or `heavy` in the configuration).
    #[arg(long, value_name = "NAME", value_parser = parse_dir_name)]
    pub heavy: Vec<String>,

    /// Keep none of the default heavy dirs on VM-local disk (only --heavy ones).
    #[arg(long)]
    pub no_heavy: bool,

    /// Forward host port 127.0.0.1:HOSTPORT to GUESTPORT in the VM (repeatable; GUESTPORT
    /// defaults to HOSTPORT). `up`: in the background until `down`; `run`: while the command runs.
    #[arg(long = "forward", value_name = "HOSTPORT[:GUESTPORT]")]
    pub forward: Vec<PortMapping>,

    /// Share nothing writable: copy the workspace into VM-local disk at the same
    /// path (a snapshot, re-synced before each `hutch exec`). `.git` is left out.
    /// (Without --ro, each repository's .git is read-only to the guest, which gets
    /// a gitdir of its own; its commits come back after each command and at `down`.)
    #[arg(long, conflicts_with = "no_workspace")]
    pub ro: bool,

    /// Like --ro, and include `.git` (so git works in the guest).
    #[arg(long, conflicts_with = "no_workspace")]
    pub ro_git: bool,

    /// With --ro: copy everything, ignoring .gitignore and .hutchignore.
    #[arg(long)]
    pub no_ignore: bool,

    /// Share .git writable, without the host's guard: the guest can then make git on this host
    /// run its code (hooks, config). Also `unguarded_git = true` in ~/.config/hutch/config.toml.
    #[arg(long)]
    pub unguarded_git: bool,
    /// Share nothing: copy the workspace onto the VM's own disk at the same path and keep it in
    /// step both ways (a host process watches both sides; `.git` and heavy dirs stay out)
    /// [default: `workspace = "sync"` in the configuration].
    #[arg(long, conflicts_with_all = ["no_workspace", "ro", "ro_git", "no_ignore", "shared"])]
    pub sync: bool,

    /// Share the workspace (virtio-fs, 9p, the VM manager's share), overriding `workspace = "sync"`.
    #[arg(long, conflicts_with_all = ["no_workspace", "ro", "ro_git"])]
    pub shared: bool,

    /// What the guest may reach through hutch's proxy: `allow` (the allow list), `open` (any
    /// public host) or `none` (nothing) [default: allow, or [network] mode in the configuration].
    #[arg(long, value_enum, env = "HUTCH_NETWORK", value_name = "MODE")]
    pub network: Option<crate::config::Mode>,

    /// Add a host to the allow list (repeatable): `example.com`, `*.example.com`, `localhost:8080`.
    #[arg(long = "allow", value_name = "HOST")]
    pub allow: Vec<crate::config::pattern::HostPattern>,
}

/// `--disk` values: a size with K, M, G or T.
fn parse_disk_size(text: &str) -> Result<u64, String> {
    hutch_proto::size::parse_size(text).map_err(|_| format!("{text:?} is not a size such as 20G or 512M"))
}

/// Flags of one command that contradict each other (clap cannot say it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlagConflict(pub &'static str);

impl UpArgs {
    /// The snapshot mode asked for, if any.
    pub fn ro_mode(&self) -> Result<Option<crate::state::RoMode>, FlagConflict> {
        if self.ro || self.ro_git {
            return Ok(Some(crate::state::RoMode { git: self.ro_git, no_ignore: self.no_ignore }));
        }
        if self.no_ignore {
            return Err(FlagConflict("--no-ignore only applies to --ro snapshots: add --ro or --ro-git"));
        }
        Ok(None)
    }
}

/// `hutch run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Boot a throw-away clone and delete it when the command ends (also on Ctrl-C, SIGTERM, SIGHUP).
    /// Takes a ready VM of the project's warm pool instead of booting, when one matches.
    #[arg(long)]
    pub rm: bool,

    /// With --rm: boot a new VM even when a ready one of the warm pool matches.
    #[arg(long, requires = "rm")]
    pub cold: bool,

    /// The VM to bring up, as `hutch up` takes it.
    #[command(flatten)]
    pub up: UpArgs,

    /// How the command runs: terminal, directory, environment, time limit, output.
    #[command(flatten)]
    pub exec: ExecFlags,

    /// Whether the command outlives this terminal (`--detach`, `--keep`).
    #[command(flatten)]
    pub session: SessionFlags,

    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `hutch shell`.
#[derive(Args, Debug)]
pub struct ShellArgs {
    /// The VM (default: the one for the current directory's workspace).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,
}

/// `hutch rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Which VM (`--name`, else the project's).
    #[command(flatten)]
    pub name: NameArg,

    /// Stop the VM first if it is running.
    #[arg(short, long)]
    pub force: bool,
}

/// `hutch ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `hutch warm`.
#[derive(Args, Debug)]
pub struct WarmArgs {
    /// How many VMs to keep ready for this project and settings (0 drops them)
    /// [default: `[warm] count` in the configuration, else 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::config::MAX_WARM)))]
    pub count: Option<u32>,

    /// Wait until they are ready (in the foreground, saying what fails) instead of warming in the background.
    #[arg(long)]
    pub wait: bool,

    /// The settings of the VMs, as `hutch run --rm` would be given them (the network is the run's own).
    #[command(flatten)]
    pub up: UpArgs,
}

/// `hutch fork`.
#[derive(Args, Debug)]
pub struct ForkArgs {
    /// Which VM (`--name`, else the project's).
    #[command(flatten)]
    pub name: NameArg,

    /// How many new VMs to make.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub count: u32,

    /// Name them PREFIX-1, PREFIX-2, … (skipping names in use) [default: the VM's name].
    #[arg(long, value_name = "PREFIX")]
    pub name_prefix: Option<String>,
}

/// `hutch warm-keeper` (started by hutch itself).
#[derive(Args, Debug)]
pub struct KeeperArgs {
    /// The pool (its folder under `warm/` in the state directory).
    #[arg(long)]
    pub project: String,
}
