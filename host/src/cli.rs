//! The command line: every subcommand's flags, parsed by clap.
//!
//! Parsing errors do not use clap's exit code 2, which a script could not tell
//! from the remote command's own 2: they exit 125 like every hutch failure.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hutch_proto::addr::Addr;

use crate::error::Error;
use crate::forward::PortMapping;
use crate::state::{BackendKind, VmName};
use crate::transport::BearerToken;

/// hutch: run commands in a VM through its agent, as if they were local.
#[derive(Parser, Debug)]
#[command(name = "hutch", version, about, propagate_version = true)]
pub struct Cli {
    /// More logging on stderr (-v debug, -vv trace). HUTCH_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create (if needed) and start a VM, and wait until its agent answers.
    Up(UpArgs),
    /// Run a command in a VM and exit with its exit code.
    Exec(ExecArgs),
    /// Boot a VM, run one command in it, exit with its code (`--rm`: a throw-away clone).
    Run(RunArgs),
    /// A login shell in a VM, on a terminal.
    Shell(ShellArgs),
    /// Stop a VM (its disk and record stay).
    Down(NameArg),
    /// Delete a VM (`-f`: even if it is running).
    Rm(RmArgs),
    /// Delete a VM and start a fresh clone of its image under the same name.
    Reset(NameArg),
    /// List VMs: name, backend, state, address, workspace, uptime.
    Ls(LsArgs),
    /// Check the host and the VM, and say how to fix what is wrong.
    Doctor(DoctorArgs),
    /// Show the configuration in force and where each value comes from.
    Config(ConfigArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print hutch's man page (roff).
    Man,
    /// Check that the agent answers; show its version, platform and round-trip time.
    Ping(PingArgs),
    /// Forward host ports (127.0.0.1) to ports in a VM until Ctrl-C or SIGTERM.
    Forward(ForwardArgs),

    /// Manage the agent inside a guest (`install`: put it into a guest over SSH).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Guest images (`prepare`: boot a base image, install the agent, stop it).
    #[command(subcommand)]
    Image(ImageCommand),

    /// Bring a `--ro` VM's snapshot of the workspace up to date with the host.
    Sync(SyncArgs),
    /// Print the guest's changes to its `--ro` snapshot as a patch for `git apply`.
    Diff(DiffArgs),
}

/// Which VM, for commands that act on one.
#[derive(Args, Debug, Clone)]
pub struct NameArg {
    /// The VM (default: the one for the current directory's workspace).
    #[arg(value_name = "NAME")]
    pub name: Option<VmName>,
}

/// How to create and start a VM.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// VM name (default: derived from the workspace folder).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// VM manager [default: qemu, or `backend` in hutch.toml / config.toml].
    #[arg(long, value_enum, env = "HUTCH_BACKEND")]
    pub backend: Option<BackendKind>,

    /// Base image (QEMU: a folder from `cargo xtask image`; default: the installed one).
    #[arg(long, env = "HUTCH_IMAGE", value_name = "IMG")]
    pub image: Option<String>,

    /// Virtual CPUs [default: 2, or `cpus` in the configuration].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub cpus: Option<u32>,

    /// Memory in MiB [default: 1024, or `memory` in the configuration].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub memory: Option<u32>,

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
    #[arg(long, conflicts_with = "no_workspace")]
    pub ro: bool,

    /// Like --ro, and include `.git` (so git works in the guest).
    #[arg(long, conflicts_with = "no_workspace")]
    pub ro_git: bool,

    /// With --ro: copy everything, ignoring .gitignore and .hutchignore.
    #[arg(long)]
    pub no_ignore: bool,
}

impl UpArgs {
    /// The snapshot mode asked for, if any.
    pub fn ro_mode(&self) -> Result<Option<crate::state::RoMode>, Error> {
        if self.ro || self.ro_git {
            return Ok(Some(crate::state::RoMode { git: self.ro_git, no_ignore: self.no_ignore }));
        }
        if self.no_ignore {
            return Err(Error::Usage("--no-ignore only applies to --ro snapshots: add --ro or --ro-git".into()));
        }
        Ok(None)
    }
}

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

/// `hutch run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Boot a throw-away clone and delete it when the command ends (also on Ctrl-C, SIGTERM, SIGHUP).
    #[arg(long)]
    pub rm: bool,

    #[command(flatten)]
    pub up: UpArgs,

    #[command(flatten)]
    pub exec: ExecFlags,

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
    #[command(flatten)]
    pub name: NameArg,

    /// Stop the VM first if it is running.
    #[arg(short, long)]
    pub force: bool,
}

/// `hutch doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The VM to check (default: --addr/HUTCH_ADDR if set, else the current workspace's VM).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

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

/// `hutch ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// How to reach the agent.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Agent address: unix:///PATH, tcp://HOST:PORT, vsock://CID:PORT or hvsock:///PATH:PORT.
    #[arg(long, env = "HUTCH_ADDR", value_name = "ADDR")]
    pub addr: Option<Addr>,

    /// File with the bearer token for tcp:// agents.
    #[arg(long, env = "HUTCH_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl AgentArgs {
    /// The token to send, if a token file was given.
    pub fn token(&self) -> Result<BearerToken, Error> {
        Ok(match &self.token_file {
            Some(path) => BearerToken::from_file(path)?,
            None => BearerToken::default(),
        })
    }
}

/// `hutch exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The VM to run in (default: --addr/HUTCH_ADDR if set, else the VM of the current workspace).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    #[command(flatten)]
    pub agent: AgentArgs,

    #[command(flatten)]
    pub flags: ExecFlags,

    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// How to run a command (shared by `exec` and `run`).
#[derive(Args, Debug, Clone)]
pub struct ExecFlags {
    /// Run on a pseudo-terminal even if stdin/stdout are not terminals.
    #[arg(short = 't', long = "tty", conflicts_with = "no_tty")]
    pub tty: bool,

    /// Never use a pseudo-terminal (pipes: stdout and stderr stay apart).
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,

    /// Working directory in the guest.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,

    /// Set a variable in the guest (repeatable). `--env NAME` passes the local value.
    #[arg(short = 'e', long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Kill the command's process group after this long (e.g. 30, 1.5, 500ms, 2m); exit 124.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Print one JSON object (exit_code, signal, timed_out, duration_ms, stdout, stderr)
    /// instead of streaming the output.
    #[arg(long)]
    pub json: bool,

    /// Do not forward stdin: the command reads /dev/null.
    #[arg(long)]
    pub no_stdin: bool,
}

/// `hutch ping`.
#[derive(Args, Debug)]
pub struct PingArgs {
    /// The VM whose agent to ping (default: --addr/HUTCH_ADDR if set, else the current workspace's VM).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    #[command(flatten)]
    pub agent: AgentArgs,

    /// Number of round trips to time.
    #[arg(short, long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,

    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `hutch forward`.
#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// The VM to forward to (default: --addr/HUTCH_ADDR if set, else the current workspace's VM).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    #[command(flatten)]
    pub agent: AgentArgs,

    /// Ports to forward: 127.0.0.1:HOSTPORT on this machine to GUESTPORT (default: HOSTPORT)
    /// on the guest's 127.0.0.1.
    #[arg(required = true, value_name = "HOSTPORT[:GUESTPORT]")]
    pub ports: Vec<PortMapping>,
}

/// `hutch agent …`.
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Upload hutch-agent and its service over SSH, start it and check that it answers.
    Install(InstallArgs),
}

/// `hutch image …`.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Boot a VM from BASE, install the agent over SSH, and stop it so its disk keeps the agent.
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

/// `hutch image prepare`.
#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// The base image (backend-specific, e.g. a Tart VM or image name).
    #[arg(value_name = "BASE")]
    pub base: String,

    /// Name of the prepared VM (default: BASE with `-hutch` appended).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// VM manager.
    #[arg(long, value_enum, env = "HUTCH_BACKEND", default_value_t = BackendKind::Qemu)]
    pub backend: BackendKind,

    #[command(flatten)]
    pub ssh: SshArgs,
}

/// An absolute guest folder.
fn parse_guest_dir(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path"));
    }
    Ok(s.to_owned())
}

/// A single directory name (no `/`, not `.` or `..`).
fn parse_dir_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err(format!("{s:?} is not a directory name"));
    }
    Ok(s.to_owned())
}

/// Parses `K=V`, or `K` alone to pass the local value of K.
fn parse_env(s: &str) -> Result<(String, String), String> {
    let (key, value) = match s.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => {
            let value = std::env::var(s).map_err(|_| format!("{s} is not set here; use {s}=VALUE"))?;
            (s.to_owned(), value)
        }
    };
    if key.is_empty() {
        return Err("the variable name is empty".into());
    }
    Ok((key, value))
}

/// Parses `30`, `1.5`, `500ms`, `30s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 30, 1.5, 500ms, 2m)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use ms, s, m or h")),
    };
    let secs = number * scale;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), String::new()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("HUTCH_SURELY_UNSET_VAR").is_err());
    }
}
