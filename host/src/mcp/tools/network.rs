//! `network`: what the VM's guest may reach, as the host enforces it (the
//! policy its network process serves: the configuration's, with the changes
//! `hutch allow`/`deny` made while it runs), and what it was refused lately (the
//! egress refusals of the VM's audit log, through the audit reader). Host
//! state only: it neither boots nor asks the VM. Hosts and paths in refusals
//! are what guest programs asked for: escaped.

use rmcp::model::{Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::audit::{self, What};
use crate::mcp::call::Call;
use crate::mcp::error::ToolError;
use crate::mcp::guest_text::meta;
use crate::mcp::limits;
use crate::mcp::vm::Place;
use crate::net::live::LiveEdits;
use crate::net::policy::PolicyFile;
use crate::net::{NetError, net_dir};

/// The tool's name.
pub const NAME: &str = "network";

/// `network`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkParams {
    /// Recent refusals to return at most (default 20, at most 500), newest last.
    pub denials: Option<usize>,
}

/// A rule of the policy.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Rule {
    /// The host pattern (`example.com`, `*.example.com`, `10.0.0.0/8:5432`).
    pub pattern: String,
    /// Where it comes from: `built-in`, `FILE:LINE`, `--allow`, or `hutch allow`/`hutch deny` while the VM runs.
    pub source: String,
}

/// A secret the host adds to requests (its value never enters the VM).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Secret {
    /// The variable the guest sees, holding a placeholder.
    pub name: String,
    /// The only hosts the real value is sent to.
    pub hosts: Vec<String>,
    /// The only HTTP methods it is sent with (empty: any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// The only path prefixes it is sent to (empty: any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// One refused connection or request.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Denial {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// CONNECT, or the HTTP method.
    pub method: String,
    /// The host asked for.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The request's path, for plain HTTP and intercepted hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why it was refused.
    pub reason: String,
}

/// What `network` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NetworkOutput {
    /// The VM.
    pub vm: String,
    /// Its network process runs: guest programs reach the outside only through it, under the rules below.
    pub serving: bool,
    /// "allow" (only the allow list), "open" (any public host but the deny list), "ask" (the allow list, and
    /// the user is asked about other hosts while they watch) or "none" (nothing).
    pub mode: String,
    /// Hosts the guest may reach (mode "allow").
    pub allow: Vec<Rule>,
    /// Hosts it may never reach.
    pub deny: Vec<Rule>,
    /// Secrets added on the host for their hosts.
    pub secrets: Vec<Secret>,
    /// The file where the user would add an `allow` entry (under [network]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// Recent refusals, oldest first.
    pub denials: Vec<Denial>,
}

/// The tool's definition.
pub fn tool() -> Tool {
    Tool::new(
        NAME,
        "The VM's network as the host enforces it: the mode, the allow and deny lists (with the file and line of each \
         rule), the secrets the host adds for their hosts, and the connections the VM was refused lately with the \
         reason. When a download fails with 403 from hutch's proxy, this says what was refused; only the user can \
         change the rules (`hutch allow HOST` on the host, or in the config file named here).",
        serde_json::Map::new(),
    )
    .with_input_schema::<NetworkParams>()
    .with_output_schema::<NetworkOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// The rules and the refusals.
pub fn network(call: &Call, place: &Place, params: NetworkParams) -> Result<NetworkOutput, ToolError> {
    let Place::Vm { state, name } = place else {
        return Err(ToolError::NotApplicable(
            "the agent was given by address, not a VM hutch manages: hutch does not control its network".into(),
        ));
    };
    let count = params.denials.unwrap_or(limits::DENIALS_DEFAULT).min(limits::DENIALS_MAX);
    let vm_dir = state.vm_dir(name);
    call.audit().detail = Some(format!("{count} denials"));
    let net = net_dir(&vm_dir);
    let serving = crate::net::daemon::daemon(&vm_dir).running();
    let policy = if net.join(crate::net::policy::POLICY_FILE).exists() {
        // The configuration's policy with the running VM's changes, as the process serves it.
        Some(LiveEdits::load(&net)?.apply(&PolicyFile::load(&net)?))
    } else {
        None
    };
    let rules = |rules: &[crate::config::network::Rule]| {
        rules.iter().map(|r| Rule { pattern: r.pattern.clone(), source: r.source.clone() }).collect::<Vec<_>>()
    };
    let events = match state.load(name) {
        Ok(record) => {
            let log = audit::store::project_file(state, &record);
            audit::store::recent(&log, limits::AUDIT_TAIL).map_err(|e| NetError::io(format!("reading {}", log.display()), e))?
        }
        Err(_) => Vec::new(),
    };
    let mut denials: Vec<Denial> = events
        .into_iter()
        .filter(|event| event.vm.is_empty() || event.vm == name.as_str())
        .filter_map(|event| match event.what {
            What::Egress(e) if e.decision == "deny" => Some(Denial {
                time: meta(&event.time),
                method: meta(&e.method),
                host: meta(&e.host),
                port: e.port,
                path: e.path.as_deref().map(meta),
                reason: meta(e.reason.as_deref().unwrap_or("")),
            }),
            _ => None,
        })
        .collect();
    denials.drain(..denials.len().saturating_sub(count));
    Ok(match policy {
        Some(policy) if serving => NetworkOutput {
            vm: name.to_string(),
            serving,
            mode: policy.mode.as_str().to_owned(),
            allow: rules(&policy.allow),
            deny: rules(&policy.deny),
            secrets: policy
                .secrets
                .iter()
                .map(|(name, s)| Secret { name: name.clone(), hosts: s.hosts.clone(), methods: s.methods.clone(), paths: s.paths.clone() })
                .collect(),
            config_file: Some(policy.advice_file),
            denials,
        },
        _ => NetworkOutput {
            vm: name.to_string(),
            serving,
            mode: "none".into(),
            allow: Vec::new(),
            deny: Vec::new(),
            secrets: Vec::new(),
            config_file: policy.map(|p| p.advice_file),
            denials,
        },
    })
}
