//! `exec`: one command in the VM, waited for, its output returned within
//! caps. As `hutch exec --json`, without a terminal.

use std::collections::HashMap;

use bytes::Bytes;
use rmcp::model::{Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::command_line;
use crate::mcp::call::Call;
use crate::mcp::capture::{self, Captured, Keep};
use crate::mcp::error::ToolError;
use crate::mcp::limits;
use crate::mcp::run::{Command, End};

/// The tool's name.
pub const NAME: &str = "exec";

/// `exec`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The program and its arguments, run as they are (no shell). Give this or `command`.
    pub argv: Option<Vec<String>>,
    /// A shell command line, run by `sh -c` (pipes, redirections, `&&`). Give this or `argv`.
    pub command: Option<String>,
    /// Working directory in the VM. Default: the project folder (the VM sees the host's project at the same path).
    pub cwd: Option<String>,
    /// Environment variables to set for the command.
    pub env: Option<HashMap<String, String>>,
    /// Seconds after which the command's process group is killed (SIGTERM, SIGKILL 2 s later). Default 600.
    pub timeout_secs: Option<f64>,
    /// Text for the command's standard input (default: none, it reads end of file at once).
    pub stdin: Option<String>,
    /// Bytes for standard input, base64-encoded, for binary input. Not with `stdin`.
    pub stdin_base64: Option<String>,
    /// Bytes of stdout and of stderr to return, each (default 32768, at most 4194304). Longer output keeps its start and its end.
    pub max_output_bytes: Option<usize>,
}

/// What `exec` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecOutput {
    /// The exit code as a shell gives it: the command's own, 128+N when signal N killed it, 124 when the timeout did.
    pub exit_code: u8,
    /// The signal that killed the command ("SIGTERM"), or null.
    pub signal: Option<String>,
    /// The timeout expired and the process group was killed.
    pub timed_out: bool,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Standard output (UTF-8; invalid bytes replaced by U+FFFD).
    pub stdout: String,
    /// Standard error, the same way.
    pub stderr: String,
    /// Bytes the command wrote to stdout in all.
    pub stdout_bytes: u64,
    /// Bytes it wrote to stderr in all.
    pub stderr_bytes: u64,
    /// stdout was longer than max_output_bytes: its middle was cut, where a line says how much.
    pub stdout_truncated: bool,
    /// The same for stderr.
    pub stderr_truncated: bool,
    /// Bytes that were not UTF-8 were replaced.
    pub lossy: bool,
    /// A background process kept the output open after the command ended; what it wrote later is not here.
    pub output_cut: bool,
}

/// The tool's definition.
pub fn tool() -> Tool {
    Tool::new(
        NAME,
        "Run a command in the VM (a sandbox: it may do anything there, nothing on the host) and wait for it to end. \
         Give `argv` (program and arguments) or `command` (a shell command line). It runs in the project folder unless \
         `cwd` says otherwise; the VM sees the project at the same path as the host, so edits there are the project's. \
         Returns the exit code, stdout and stderr (each cut to `max_output_bytes`, keeping the start and the end; \
         `*_truncated` says so). A command running longer than `timeout_secs` (default 600) is killed; for servers, \
         watchers and anything longer, use `session_start`. Cancelling the call interrupts the command.",
        serde_json::Map::new(),
    )
    .with_input_schema::<ExecParams>()
    .with_output_schema::<ExecOutput>()
    .with_annotations(ToolAnnotations::new().read_only(false).destructive(true).idempotent(false).open_world(true))
}

/// Runs the command.
pub async fn exec(call: &Call, params: ExecParams) -> Result<ExecOutput, ToolError> {
    let argv = command_line(params.argv, params.command)?;
    let stdin = match (params.stdin, params.stdin_base64) {
        (Some(_), Some(_)) => return Err(ToolError::Invalid("give `stdin` or `stdin_base64`, not both".into())),
        (Some(text), None) => Some(Bytes::from(text)),
        (None, Some(encoded)) => Some(Bytes::from(super::base64_arg("stdin_base64", &encoded)?)),
        (None, None) => None,
    };
    let cap = super::output_cap(params.max_output_bytes, limits::OUTPUT_DEFAULT)?;
    let timeout = super::timeout_arg(params.timeout_secs, limits::EXEC_TIMEOUT)?;
    {
        let mut audit = call.audit();
        audit.argv = argv.iter().map(|a| call.redact(a)).collect();
        audit.detail = stdin.as_ref().map(|s| format!("{} bytes of stdin", s.len()));
    }
    let mut reached = call.reach().await?;
    let cwd = params.cwd.unwrap_or_else(|| Call::default_cwd(&reached));
    call.audit().cwd = Some(call.redact(&cwd));
    let command = Command {
        argv,
        env: call.env(params.env.as_ref()),
        cwd,
        stdin,
        timeout,
        cap,
        err_cap: cap,
        keep: Keep::HeadAndTail,
        tag: String::new(),
    };
    let ran = call.run(&mut reached.client, command).await?;
    let exited = match ran.end {
        End::Exited(exited) => exited,
        End::StartFailed(failed) => return Err(super::start_failed(&failed)),
        End::Cancelled => return Err(ToolError::Cancelled),
        End::Cut => return Err(ToolError::Guest("the agent sent more output than it was asked to keep".into())),
    };
    let signal = super::signal_name(&exited);
    {
        let mut audit = call.audit();
        audit.exit_code = match exited.status {
            Some(hutch_proto::v1::exited::Status::Code(code)) => Some(code),
            _ => None,
        };
        audit.signal.clone_from(&signal);
    }
    let (stdout, out_lossy) = capture::joined(&ran.stdout);
    let (stderr, err_lossy) = capture::joined(&ran.stderr);
    Ok(ExecOutput {
        exit_code: crate::exit::of_exited(&exited)?,
        signal,
        timed_out: exited.timed_out,
        duration_ms: exited.duration_ms,
        stdout,
        stderr,
        stdout_bytes: ran.stdout.total,
        stderr_bytes: ran.stderr.total,
        stdout_truncated: truncated(&ran.stdout),
        stderr_truncated: truncated(&ran.stderr),
        lossy: out_lossy || err_lossy,
        output_cut: exited.output_cut,
    })
}

fn truncated(captured: &Captured) -> bool {
    captured.cut() > 0
}
