//! Flags of the session commands: `exec --detach/--keep` (shared with
//! `run`), `attach`, `ps`, `logs`, `wait`, `kill`.

use clap::Args;

use super::*;
use crate::exec::{Options, SessionSpec};
use crate::sessions::SessionError;
use crate::state::VmName;

/// Keeping a command as a session (shared by `exec` and `run`).
#[derive(Args, Debug, Clone, Default)]
pub struct SessionFlags {
    /// Start the command as a session and return at once, printing its tag
    /// (exit 0); `hutch attach TAG` connects to it later.
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Keep the command running if hutch goes away before it ends (terminal
    /// closed, connection lost, hutch killed); `hutch attach` finds it.
    /// Ctrl-C and --timeout still end it. [default: `keep` in the
    /// configuration's [exec] table, for commands on a terminal]
    #[arg(long, conflicts_with = "no_keep")]
    pub keep: bool,

    /// Do not keep the command as a session, whatever the configuration says.
    #[arg(long)]
    pub no_keep: bool,

    /// The session's tag, unique in the VM (default: the program's name and a number).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Output the session keeps for whoever attaches later, e.g. 16M [default: 4M; the agent caps it].
    #[arg(long, value_name = "SIZE", value_parser = hutch_proto::size::parse_size)]
    pub buffer: Option<u64>,
}

impl SessionFlags {
    /// The session these flags ask for, if any: `--detach`, `--keep`, or the
    /// configuration's `keep` (`keep_by_default`) for a command on a terminal.
    pub fn spec(&self, options: &Options, keep_by_default: bool) -> Result<Option<SessionSpec>, SessionError> {
        let keep = self.keep || (keep_by_default && options.tty && !self.no_keep);
        if !self.detach && !keep {
            return match (&self.tag, &self.buffer) {
                (Some(_), _) => Err(SessionError::NotASession("--tag")),
                (_, Some(_)) => Err(SessionError::NotASession("--buffer")),
                (None, None) => Ok(None),
            };
        }
        Ok(Some(SessionSpec { name: self.tag.clone().unwrap_or_default(), detach: self.detach, buffer: self.buffer.unwrap_or(0) }))
    }
}

/// Which VM's sessions (`ps`, and every command that names one session).
#[derive(Args, Debug, Clone)]
pub struct SessionsOf {
    /// The VM (default: --addr/HUTCH_ADDR if set, else the VM of the current workspace).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<VmName>,

    /// Which agent: a VM by name, or one by address.
    #[command(flatten)]
    pub agent: AgentArgs,
}

impl SessionsOf {
    /// The agent these flags choose.
    pub fn target(&self) -> Result<Target, TargetError> {
        self.agent.target(self.name.as_ref())
    }
}

/// Which session of which VM.
#[derive(Args, Debug, Clone)]
pub struct SessionTarget {
    /// Which VM's sessions.
    #[command(flatten)]
    pub vm: SessionsOf,

    /// The session's tag (`hutch ps` lists them).
    #[arg(value_name = "TAG")]
    pub tag: String,
}

/// `hutch attach`.
#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Which session, of which VM.
    #[command(flatten)]
    pub target: SessionTarget,

    /// Take the writer's seat from the client that holds it (it is detached).
    #[arg(short, long, conflicts_with = "read_only")]
    pub force: bool,

    /// Only watch: send no input, even when nobody else is attached.
    #[arg(short, long)]
    pub read_only: bool,
}

/// `hutch ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Which VM's sessions.
    #[command(flatten)]
    pub vm: SessionsOf,

    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `hutch logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Which session, of which VM.
    #[command(flatten)]
    pub target: SessionTarget,

    /// After the buffered output, follow the session's output until it ends.
    #[arg(short, long)]
    pub follow: bool,
}

/// `hutch wait`.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Which session, of which VM.
    #[command(flatten)]
    pub target: SessionTarget,
}

/// `hutch kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Which session, of which VM.
    #[command(flatten)]
    pub target: SessionTarget,

    /// The signal, by name (TERM, KILL, INT, HUP, USR1, …).
    #[arg(short, long, value_name = "SIG", default_value = "TERM")]
    pub signal: String,
}
