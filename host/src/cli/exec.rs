//! Flags of `hutch exec` (shared with `run`) and `hutch ping`.

use std::time::Duration;

use clap::Args;

use super::*;
use crate::state::VmName;

/// `hutch exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The VM to run in (default: --addr/HUTCH_ADDR if set, else the VM of the current workspace).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// Which agent: a VM by name, or one by address.
    #[command(flatten)]
    pub agent: AgentArgs,

    /// How the command runs: terminal, directory, environment, time limit, output.
    #[command(flatten)]
    pub flags: ExecFlags,

    /// Whether the command outlives this terminal (`--detach`, `--keep`).
    #[command(flatten)]
    pub session: SessionFlags,

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

    /// Which agent: a VM by name, or one by address.
    #[command(flatten)]
    pub agent: AgentArgs,

    /// Number of round trips to time.
    #[arg(short, long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,

    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl ExecFlags {
    /// The exec these flags ask for: `argv` in `default_cwd` unless `--cwd`
    /// says otherwise. Like `ssh` and `docker exec -it`, a terminal when both
    /// ends are terminals.
    pub fn options(&self, argv: Vec<String>, default_cwd: Option<String>) -> crate::exec::Options {
        use std::io::IsTerminal;
        let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal() && !self.json;
        crate::exec::Options {
            argv,
            env: self.env.iter().cloned().collect(),
            cwd: self.cwd.clone().or(default_cwd).unwrap_or_default(),
            tty: self.tty || (interactive && !self.no_tty),
            timeout: self.timeout,
            capture: self.json,
            no_stdin: self.no_stdin,
            ask: None,
        }
    }
}
