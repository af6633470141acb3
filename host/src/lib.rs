//! hutch, the host side: the CLI's building blocks.
//!
//! - [`cli`] has the flags, [`cmd`] one module per subcommand (parse, call);
//! - [`plan`] resolves what `up`/`run` ask for, [`lifecycle`] brings VMs up
//!   (start, workspace, `--ro` sync, runtime hook) and down, through
//!   [`backend`]s, whose long-lived processes are [`daemon`]s;
//! - [`target`] chooses the agent, [`connect`] reaches a VM's agent (through
//!   its [`mux`] when one runs) and says why not, over [`transport`];
//! - [`exec`] drives one remote process from the local terminal or pipes;
//! - [`sync`] keeps `--ro` snapshots equal to the host tree, and diffs them;
//! - [`git`] keeps the project's `.git` under the host's guard and takes
//!   the guest's commits back;
//! - [`net`] is the guest's network under the host's control: the per-VM
//!   egress proxy, its policy and secrets; [`audit`] the log of every
//!   egress decision and exec, kept per project;
//! - [`sessions`] lists, waits for and signals a VM's sessions;
//! - [`mcp`] serves a VM's tools to MCP clients (`hutch mcp`);
//! - [`workspace`] sets the project up in the guest, with mount points only
//!   for the [`heavy`] dirs it uses, and removes them again;
//! - [`warm`] keeps VMs booted ahead for `run --rm` (warm pools);
//! - [`state`] holds the typed VM records;
//! - [`untrusted`] is the edge against the guest: every answer of an agent
//!   is checked, capped and escaped there before hutch uses it;
//! - [`userns`] says whether this host lets hutch make user namespaces;
//! - [`error`] and [`exit`] gather each module's errors and map exit codes in
//!   one place (see docs/ARCHITECTURE.md).

pub mod agent_install;
pub mod audit;
pub mod backend;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod connect;
pub mod created_dirs;
pub mod daemon;
pub mod dir_times;
pub mod doctor;
pub mod duration;
pub mod error;
pub mod exec;
pub mod exit;
pub mod fork;
pub mod forward;
pub mod git;
pub mod heavy;
pub mod hooks;
pub mod lifecycle;
pub mod mcp;
pub mod mux;
pub mod net;
pub mod plan;
pub mod sessions;
pub mod state;
pub mod sync;
pub mod target;
pub mod transport;
pub mod untrusted;
pub mod userns;
pub mod warm;
pub mod workspace;
