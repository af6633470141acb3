//! The command line: every subcommand's flags, parsed by clap.
//!
//! Parsing errors do not use clap's exit code 2, which a script could not tell
//! from the remote command's own 2: they exit 125 like every hutch failure.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hutch_proto::addr::Addr;

use crate::state::VmName;
use crate::target::{Target, TargetError};

mod exec;
mod fast;
mod git;
mod install;
mod parse;
mod sessions;
mod snapshot;
mod tools;
mod vm;

pub use exec::*;
pub use fast::parse_exec;
pub use git::*;
pub use install::*;
pub use parse::*;
pub use sessions::*;
pub use snapshot::*;
pub use tools::*;
pub use vm::*;

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
    /// Keep VMs booted and prepared for this project, so `hutch run --rm` starts at once (`--count 0` drops them).
    Warm(WarmArgs),
    /// Make new VMs whose disks start as a VM's is now (copy-on-write), each a machine of its own.
    Fork(ForkArgs),
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

    /// Connect to a running session (from `exec --detach` or `--keep`); Ctrl-\ twice detaches.
    Attach(AttachArgs),
    /// List a VM's sessions: tag, pid, state, attached, started, command.
    Ps(PsArgs),
    /// Print a session's buffered output (`-f`: then follow it until it ends).
    Logs(LogsArgs),
    /// Wait until a session ends and exit with its exit code.
    Wait(WaitArgs),
    /// Send a signal to a session's process group (default TERM).
    Kill(KillArgs),

    /// Manage the agent inside a guest (`install`: put it into a guest over SSH).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Guest images (`prepare`: boot a base image, install the agent, stop it).
    #[command(subcommand)]
    Image(ImageCommand),

    /// Bring a `--ro` VM's snapshot up to date, or flush a synced VM both ways (`--watch`: keep an agent's copy in step).
    Sync(SyncArgs),
    /// Print the guest's changes to its `--ro` snapshot as a patch for `git apply` (a synced VM: its conflicts and refusals).
    Diff(DiffArgs),
    /// Take the guest's commits into the host's repositories now (also done after every
    /// command that changed them, and at `down`/`rm`).
    Fetch(FetchArgs),

    /// Show a VM's audit log: every egress decision and every command run in it.
    Audit(AuditArgs),

    /// The old name of `audit` (one letter from `logs`), kept for one release.
    #[command(hide = true)]
    Log(AuditArgs),

    /// Allow hosts in a running VM's network at once, no restart (`--save`: also in hutch.toml).
    Allow(AllowArgs),

    /// Deny hosts in a running VM's network at once, cutting its open connections to them.
    Deny(RuleArgs),

    /// Serve MCP on stdin/stdout: a VM as the sandboxed tool of an MCP client (Claude Code, Codex…).
    Mcp(McpArgs),

    /// Relay a VM's calls over one shared agent connection (started by hutch itself).
    #[command(hide = true)]
    Mux(MuxArgs),

    /// Serve a VM's guest network through hutch's proxy (started by hutch itself).
    #[command(hide = true)]
    Net(MuxArgs),

    /// Run a program in the git guard's mount namespace (started by hutch itself).
    #[command(hide = true, name = "guard-exec")]
    GuardExec(GuardExecArgs),

    /// Relay `git upload-pack` in the guest to host git (run by host git itself).
    #[command(hide = true, name = "git-bridge")]
    GitBridge(GitBridgeArgs),

    /// Quarantine repositories that appear in a VM's project (started by hutch itself).
    #[command(hide = true, name = "git-watch")]
    GitWatch(MuxArgs),
    /// Keep a synced VM's workspace in step both ways (started by hutch itself).
    #[command(hide = true)]
    SyncDaemon(MuxArgs),
    /// Keep a project's warm pool filled (started by hutch itself).
    #[command(hide = true)]
    WarmKeeper(KeeperArgs),
}

/// `hutch audit` (and its old name, `hutch log`).
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Which VM (`--name`, else the project's).
    #[command(flatten)]
    pub name: NameArg,

    /// Keep printing new events as they come (until Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,

    /// Print the raw JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// `hutch deny`, and what `hutch allow` shares with it.
#[derive(Args, Debug)]
pub struct RuleArgs {
    /// The VM (default: the one for the current directory's workspace).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// Also write the rule into the project's hutch.toml (comments and layout kept), so it outlives the VM.
    #[arg(long)]
    pub save: bool,

    /// Host patterns: example.com, *.example.com, localhost:8080, 10.0.0.0/8, tcp://github.com:22.
    #[arg(required = true, value_name = "HOST")]
    pub hosts: Vec<crate::config::pattern::HostPattern>,
}

/// `hutch allow`.
#[derive(Args, Debug)]
pub struct AllowArgs {
    /// The hosts, and where the rule goes.
    #[command(flatten)]
    pub rule: RuleArgs,

    /// Only let through the requests waiting for an answer now (`mode = "ask"`); add no rule.
    #[arg(long, conflicts_with = "save")]
    pub once: bool,
}

/// `hutch mcp`.
#[derive(Args, Debug)]
pub struct McpArgs {
    /// The VM the tools act in, started at the first call if it is not running (default:
    /// --addr/HUTCH_ADDR if set, else the VM of the current directory, made as `hutch up` would).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// Which agent: a VM by name, or one by address.
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// `hutch mux` and `hutch net`: per-VM daemons (see `crate::mux`, `crate::net::daemon`).
#[derive(Args, Debug)]
pub struct MuxArgs {
    /// The VM whose agent to relay to.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: VmName,
}

/// Which VM, for commands that act on one.
#[derive(Args, Debug, Clone)]
pub struct NameArg {
    /// The VM (default: the one for the current directory's workspace).
    #[arg(value_name = "NAME", conflicts_with = "name_flag")]
    positional: Option<VmName>,

    /// The same, as a flag (as `up`, `exec` and `shell` take it).
    #[arg(short = 'n', long = "name", id = "name_flag", value_name = "NAME")]
    flag: Option<VmName>,
}

impl NameArg {
    /// The VM named, either way.
    pub fn name(&self) -> Option<&VmName> {
        self.positional.as_ref().or(self.flag.as_ref())
    }
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
    /// The target these flags and `--name` choose (see [`Target::resolve`]).
    pub fn target(&self, name: Option<&VmName>) -> Result<Target, TargetError> {
        Target::resolve(name, self.addr.as_ref(), self.token_file.as_deref())
    }
}
