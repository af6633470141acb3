//! One tool call as the tools see it: the agent to reach, the environment
//! the configuration adds to commands, the client's progress token and
//! cancellation, and the audit line the call fills in as it goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use super::error::ToolError;
use super::progress::Progress;
use super::run::{self, Command, Ran};
use super::vm::{Reached, Vm};
use crate::audit;
use crate::net::secrets::redact_values;
use crate::transport::Client;

/// What the configuration adds to every command, as for `hutch exec`.
#[derive(Debug, Default)]
pub struct Env {
    /// `env` of the configuration files (`NAME=value`, or `NAME` passed from here).
    pub vars: BTreeMap<String, String>,
    /// The secrets' real values in this process's environment, by secret
    /// name: never sent into the guest, and redacted from the audit log.
    pub secrets: Vec<(String, String)>,
}

impl Env {
    /// The configuration in force in `dir` (none when it cannot be read:
    /// the tools say so when they need it).
    pub fn load(dir: Option<&std::path::Path>) -> Env {
        let Some(dir) = dir else { return Env::default() };
        match crate::config::Config::load(dir) {
            Ok(config) => {
                Env { vars: crate::config::env_pairs(&config.env.value), secrets: crate::net::exec::real_values(&config.network) }
            }
            Err(e) => {
                eprintln!("hutch: warning: {e}; commands get no `env` from the configuration");
                Env::default()
            }
        }
    }
}

/// The context of one tool call.
pub struct Call {
    vm: Arc<Vm>,
    env: Arc<Env>,
    /// Progress notifications for this call.
    pub progress: Arc<Progress>,
    /// Cancelled when the client cancels the call (or goes away).
    pub cancel: CancellationToken,
    /// The call's audit line, filled in by the tool.
    audit: Mutex<audit::Tool>,
    /// The label its commands carry in the agent's logs.
    tag: String,
}

impl Call {
    /// A call of `tool`, the `seq`th of this server.
    pub fn new(vm: Arc<Vm>, env: Arc<Env>, progress: Arc<Progress>, cancel: CancellationToken, tool: &str, seq: u64) -> Call {
        let audit = Mutex::new(audit::Tool { tool: tool.to_owned(), ..audit::Tool::default() });
        Call { vm, env, progress, cancel, audit, tag: format!("mcp-{}-{seq}", std::process::id()) }
    }

    /// The audit line, to fill in.
    pub fn audit(&self) -> MutexGuard<'_, audit::Tool> {
        self.audit.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The finished audit line.
    pub fn into_audit(self) -> audit::Tool {
        self.audit.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `text` with the secrets' real values replaced by their names, for the audit log.
    pub fn redact(&self, text: &str) -> String {
        redact_values(text, self.env.secrets.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// A connection to the agent, the VM started first if it does not run;
    /// gives up when the client cancels (a boot under way goes on).
    pub async fn reach(&self) -> Result<Reached, ToolError> {
        tokio::select! {
            reached = self.vm.reach(self.progress.clone()) => Ok(reached?),
            () = self.cancel.cancelled() => Err(ToolError::Cancelled),
        }
    }

    /// The environment for a command: the configuration's `env`, then
    /// `vars` (which win), without any variable holding a secret's real value.
    pub fn env(&self, vars: Option<&HashMap<String, String>>) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = self.env.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.extend(vars.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        crate::net::exec::scrub_env(&mut env, &self.env.secrets);
        env
    }

    /// The working directory a command gets when the client names none: the
    /// host's current directory when it is in the VM's workspace (the guest
    /// sees it at the same path), else the workspace, else the agent's own.
    pub fn default_cwd(reached: &Reached) -> String {
        reached.target.default_cwd().unwrap_or_default()
    }

    /// A command for this call, its output kept as `keep` says within `cap`.
    pub fn command(&self, argv: Vec<String>, cwd: String) -> Command {
        Command {
            argv,
            env: self.env(None),
            cwd,
            stdin: None,
            timeout: super::limits::GUEST_TOOL_TIMEOUT,
            cap: super::limits::GUEST_TOOL_OUTPUT,
            err_cap: super::limits::GUEST_TOOL_ERRORS,
            keep: super::capture::Keep::Head,
            tag: self.tag.clone(),
        }
    }

    /// Runs `command` through `client`, with this call's progress and cancellation.
    pub async fn run(&self, client: &mut Client, mut command: Command) -> Result<Ran, ToolError> {
        command.tag = self.tag.clone();
        let ran = run::run(client, &command, &self.progress, &self.cancel).await?;
        if matches!(ran.end, run::End::Cancelled) {
            return Err(ToolError::Cancelled);
        }
        Ok(ran)
    }
}
