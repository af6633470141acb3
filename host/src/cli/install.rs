//! Flags of `hutch agent install` and `hutch image prepare`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::*;
use crate::state::{BackendKind, VmName};

/// `hutch agent …`.
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Upload hutch-agent and its service over SSH, start it and check that it answers.
    Install(InstallArgs),
}

/// `hutch image …`.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Make BASE an image VMs boot with the agent: install it over SSH (systemd) or boot it with hutch's init (--init hutch).
    Prepare(PrepareArgs),
}

/// How to log in over SSH and what to upload (shared by `agent install` and `image prepare`).
#[derive(Args, Debug, Clone)]
pub struct SshArgs {
    /// Remote user (default: the backend's usual one for --name, else the local user).
    #[arg(short = 'l', long, value_name = "USER")]
    pub user: Option<String>,

    /// Private key file (unencrypted OpenSSH format). Default: the keys in ssh-agent (SSH_AUTH_SOCK).
    #[arg(short = 'i', long, value_name = "KEY", conflicts_with = "password")]
    pub identity: Option<PathBuf>,

    /// Log in with a password (e.g. admin/admin on stock Tart images), read from
    /// HUTCH_SSH_PASSWORD or asked on the terminal; never given on the command line.
    #[arg(long)]
    pub password: bool,

    /// The hutch-agent binary to upload (default: the one built for the guest's
    /// OS and CPU, next to hutch or in the build tree).
    #[arg(long, value_name = "PATH")]
    pub agent_binary: Option<PathBuf>,
}

/// `hutch agent install`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// The hutch VM to install into (it must be running; its backend says where SSH answers).
    #[arg(short = 'n', long, value_name = "NAME", conflicts_with = "host", required_unless_present = "host")]
    pub name: Option<VmName>,

    /// The guest's SSH host name or address.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,

    /// The guest's SSH port (with --host).
    #[arg(short = 'p', long, value_name = "PORT", default_value_t = 22, requires = "host")]
    pub port: u16,

    /// How to log in to the guest over SSH.
    #[command(flatten)]
    pub ssh: SshArgs,

    /// Install under this guest folder: DIR/bin/hutch-agent, DIR/etc/systemd/system/…,
    /// socket DIR/agent.sock (default: /usr/local/bin, /etc, /run/hutch/agent.sock).
    #[arg(long, value_name = "DIR", value_parser = parse_guest_dir)]
    pub prefix: Option<String>,

    /// Write no service file: start the agent now in the background (nohup), on the
    /// Unix socket only (guests without systemd/launchd, tests).
    #[arg(long)]
    pub no_service: bool,

    /// Like --no-service, but start the agent with this shell command on the guest.
    #[arg(long, value_name = "CMD", conflicts_with = "no_service")]
    pub start_command: Option<String>,

    /// Stop the VM afterwards, so its image keeps the agent.
    #[arg(long)]
    pub stop: bool,
}

/// `hutch image prepare --init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrepareInit {
    /// The disk's own /sbin/init (systemd), with the agent installed as a service over SSH.
    Disk,
    /// hutch's own init, the agent of hutch's initramfs as PID 1 (QEMU only).
    Hutch,
}

/// `hutch image prepare`.
#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// The base image: QEMU: a raw or qcow2 disk file (ext4 root file system); Tart: a VM or image name.
    #[arg(value_name = "BASE")]
    pub base: String,

    /// Which init boots the image: `disk`, its own (systemd, with sshd: the agent is installed as a service over SSH),
    /// or `hutch`, hutch's own (QEMU; no systemd or sshd needed: the agent comes with hutch's kernel).
    #[arg(long, value_enum, default_value_t = PrepareInit::Disk, conflicts_with_all = ["user", "identity", "password", "agent_binary"])]
    pub init: PrepareInit,

    /// Name of the prepared VM, or with QEMU of the image in $state/images (default: BASE with `-hutch` appended).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// VM manager.
    #[arg(long, value_enum, env = "HUTCH_BACKEND", default_value_t = BackendKind::Qemu)]
    pub backend: BackendKind,

    /// How to log in to the guest over SSH.
    #[command(flatten)]
    pub ssh: SshArgs,
}

impl SshArgs {
    /// How to log in, as these flags say.
    pub fn login(&self) -> crate::agent_install::login::Login {
        crate::agent_install::login::Login { user: self.user.clone(), identity: self.identity.clone(), password: self.password }
    }
}
