//! The session tools: `session_start` (a command that runs on by itself,
//! as `hutch exec --detach`), `session_logs` (its output: the newest, or
//! from an offset onwards), `session_wait`, `session_kill` and
//! `session_list` (`hutch ps`). Tags, command lines and states come from the
//! guest: escaped and bounded.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use hutch_proto::v1::attach_request::Kind as AttachKind;
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{AttachMode, AttachRequest, AttachStart, SessionState};
use rmcp::model::{Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command_line;
use crate::exec::{Options, Outcome, SessionSpec};
use crate::mcp::call::Call;
use crate::mcp::capture::{self, Capture, Keep};
use crate::mcp::error::ToolError;
use crate::mcp::guest_text::{meta, meta_json};
use crate::mcp::limits;
use crate::mcp::progress;
use crate::sessions;
use crate::transport::CallError;

/// `session_start`'s name.
pub const START: &str = "session_start";
/// `session_logs`'s name.
pub const LOGS: &str = "session_logs";
/// `session_wait`'s name.
pub const WAIT: &str = "session_wait";
/// `session_kill`'s name.
pub const KILL: &str = "session_kill";
/// `session_list`'s name.
pub const LIST: &str = "session_list";

/// How long hutch waits to hear that a session started.
const START_WAIT: Duration = Duration::from_secs(30);

/// `session_start`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartParams {
    /// The program and its arguments, run as they are. Give this or `command`.
    pub argv: Option<Vec<String>>,
    /// A shell command line, run by `sh -c`. Give this or `argv`.
    pub command: Option<String>,
    /// Working directory in the VM (default: the project folder).
    pub cwd: Option<String>,
    /// Environment variables to set.
    pub env: Option<HashMap<String, String>>,
    /// The session's tag, unique in the VM: 1-64 of A-Z a-z 0-9 . _ - (default: the program's name and a number).
    pub tag: Option<String>,
    /// Kill its process group after this many seconds (default: never).
    pub timeout_secs: Option<f64>,
    /// Bytes of its newest output the VM keeps for `session_logs` (default 4 MiB).
    pub buffer_bytes: Option<u64>,
}

/// What `session_start` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StartOutput {
    /// The session's tag, for the other session tools.
    pub tag: String,
}

/// `session_logs`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// The session's tag.
    pub tag: String,
    /// Return the output from this offset on (the `end_offset` of the last call), instead of the newest output.
    pub since_offset: Option<u64>,
    /// Bytes to return at most (default 32768, at most 4194304): the newest ones, or the first ones from `since_offset`.
    pub max_bytes: Option<usize>,
}

/// What `session_logs` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LogsOutput {
    /// The session's tag.
    pub tag: String,
    /// Its stdout and stderr as they came, as text (invalid UTF-8 replaced).
    pub output: String,
    /// Offset of the first byte returned, counted from the session's first byte of output.
    pub start_offset: u64,
    /// Offset just past the last byte returned: pass it as `since_offset` to get what follows.
    pub end_offset: u64,
    /// Bytes asked for (from `since_offset`) that the VM no longer keeps: its buffer holds the newest output only.
    pub missed_bytes: u64,
    /// More output than `max_bytes` is available after `end_offset`.
    pub more: bool,
    /// Bytes that were not UTF-8 were replaced.
    pub lossy: bool,
    /// The session's exit code, once it has ended (null while it runs).
    pub exit_code: Option<u8>,
}

/// `session_wait`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The session's tag.
    pub tag: String,
    /// Give up waiting after this many seconds (default 600); the session runs on.
    pub timeout_secs: Option<f64>,
}

/// What `session_wait` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WaitOutput {
    /// The session's tag.
    pub tag: String,
    /// "exited", "lost" (it ended with a previous agent: its status is unknown) or "running" (the wait timed out).
    pub state: String,
    /// Its exit code as a shell gives it (128+N for signal N, 124 for its timeout), once it exited.
    pub exit_code: Option<u8>,
    /// The signal that ended it ("SIGTERM"), if one did.
    pub signal: Option<String>,
    /// Its own timeout ended it.
    pub timed_out: bool,
}

/// `session_kill`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillParams {
    /// The session's tag.
    pub tag: String,
    /// The signal, by name: TERM (default), INT, HUP, KILL, USR1…
    pub signal: Option<String>,
}

/// What `session_kill` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct KillOutput {
    /// The session's tag.
    pub tag: String,
    /// The signal sent to its process group.
    pub signal: String,
}

/// `session_list`'s arguments: none.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {}

/// What `session_list` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOutput {
    /// The VM's sessions, running and recently ended, oldest first, as `hutch ps --json` shows them.
    pub sessions: Vec<Value>,
}

/// `session_start`'s definition.
pub fn start_tool() -> Tool {
    Tool::new(
        START,
        "Start a command in the VM as a session that runs on by itself (a dev server, a watcher, a long build or \
         test run) and return its tag at once. Read its output with `session_logs`, wait for its end with \
         `session_wait`, stop it with `session_kill`, list sessions with `session_list`. Its stdin is empty.",
        serde_json::Map::new(),
    )
    .with_input_schema::<StartParams>()
    .with_output_schema::<StartOutput>()
    .with_annotations(ToolAnnotations::new().read_only(false).destructive(true).idempotent(false).open_world(true))
}

/// `session_logs`'s definition.
pub fn logs_tool() -> Tool {
    Tool::new(
        LOGS,
        "A session's output (stdout and stderr as they came): by default its newest `max_bytes`; with `since_offset` \
         (the `end_offset` of the previous call), what came after it. The VM keeps each session's newest output \
         (4 MiB by default); `missed_bytes` says what it no longer had.",
        serde_json::Map::new(),
    )
    .with_input_schema::<LogsParams>()
    .with_output_schema::<LogsOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// `session_wait`'s definition.
pub fn wait_tool() -> Tool {
    Tool::new(
        WAIT,
        "Wait until a session ends and return its exit code, or until `timeout_secs` (default 600) pass, when \
         `state` is \"running\" and the session runs on. Cancelling the call stops the wait, not the session.",
        serde_json::Map::new(),
    )
    .with_input_schema::<WaitParams>()
    .with_output_schema::<WaitOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// `session_kill`'s definition.
pub fn kill_tool() -> Tool {
    Tool::new(KILL, "Send a signal (default TERM) to a running session's process group.", serde_json::Map::new())
        .with_input_schema::<KillParams>()
        .with_output_schema::<KillOutput>()
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(true).idempotent(false).open_world(false))
}

/// `session_list`'s definition.
pub fn list_tool() -> Tool {
    Tool::new(
        LIST,
        "List the VM's sessions (as `hutch ps`): tag, pid, state, command, when it started, exit code once ended.",
        serde_json::Map::new(),
    )
    .with_input_schema::<ListParams>()
    .with_output_schema::<ListOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// Starts a session.
pub async fn start(call: &Call, params: StartParams) -> Result<StartOutput, ToolError> {
    let argv = command_line(params.argv, params.command)?;
    let timeout = params.timeout_secs.map(|secs| super::timeout_arg(Some(secs), limits::MAX_TIMEOUT)).transpose()?;
    call.audit().argv = argv.iter().map(|a| call.redact(a)).collect();
    let mut reached = call.reach().await?;
    let cwd = params.cwd.unwrap_or_else(|| Call::default_cwd(&reached));
    call.audit().cwd = Some(call.redact(&cwd));
    let options = Options { argv, env: call.env(params.env.as_ref()), cwd, tty: false, timeout, capture: false, no_stdin: true, ask: None };
    let spec = SessionSpec { name: params.tag.unwrap_or_default(), detach: true, buffer: params.buffer_bytes.unwrap_or(0) };
    let starting = tokio::time::timeout(START_WAIT, crate::exec::attach::start_detached(&mut reached.client, &options, &spec));
    let finished = tokio::select! {
        finished = starting => finished
            .map_err(|_| ToolError::Guest(format!("the agent did not say within {START_WAIT:?} whether the session started")))?
            ?,
        () = call.cancel.cancelled() => return Err(ToolError::Cancelled),
    };
    match finished.outcome {
        Outcome::Detached(detached) => {
            let tag = meta(&detached.session);
            call.audit().session = Some(tag.clone());
            Ok(StartOutput { tag })
        }
        Outcome::StartFailed(failed) => Err(super::start_failed(&failed)),
        other => Err(ToolError::Guest(format!("the session did not start: the agent answered {}", meta(&format!("{other:?}"))))),
    }
}

/// A session's output.
pub async fn logs(call: &Call, params: LogsParams) -> Result<LogsOutput, ToolError> {
    let max = super::output_cap(params.max_bytes, limits::LOGS_DEFAULT)?;
    {
        let mut audit = call.audit();
        audit.session = Some(meta(&params.tag));
        audit.detail = params.since_offset.map(|offset| format!("since {offset}"));
    }
    let mut reached = call.reach().await?;
    let start = AttachStart { session: params.tag.clone(), mode: AttachMode::AttachLogs as i32, force: false, size: None, follow: false };
    let request = AttachRequest { kind: Some(AttachKind::Start(start)) };
    let mut responses =
        reached.client.attach(tokio_stream::once(request)).await.map_err(|status| sessions::from_status(status, &params.tag))?.into_inner();
    // Where the next byte is in the session's output, counted from its first.
    let mut position = 0u64;
    let mut capture = Capture::new(max, if params.since_offset.is_some() { Keep::Head } else { Keep::Tail });
    let mut first_kept: Option<u64> = None;
    let mut exit_code = None;
    let deadline = tokio::time::sleep(limits::LOGS_READ);
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            message = responses.next() => message,
            () = &mut deadline => break,
            () = call.cancel.cancelled() => return Err(ToolError::Cancelled),
        };
        let data = match message {
            Some(Ok(message)) => match message.kind {
                Some(Kind::Stdout(data) | Kind::Stderr(data)) => data,
                Some(Kind::Dropped(dropped)) => {
                    position = position.saturating_add(dropped.stdout_bytes).saturating_add(dropped.stderr_bytes);
                    continue;
                }
                Some(Kind::Exited(exited)) => {
                    exit_code = Some(crate::exit::of_exited(&exited)?);
                    break;
                }
                Some(Kind::Detached(_)) | None => break,
                Some(_) => continue,
            },
            Some(Err(status)) => return Err(sessions::from_status(status, &params.tag).into()),
            None => break,
        };
        let skip = params.since_offset.map_or(0, |since| since.saturating_sub(position).min(data.len() as u64) as usize);
        if skip < data.len() && first_kept.is_none() {
            first_kept = Some(position + skip as u64);
        }
        capture.push(&data[skip..]);
        position = position.saturating_add(data.len() as u64);
    }
    let kept = capture.finish();
    let returned = (kept.head.len() + kept.tail.len()) as u64;
    let start_offset = match params.since_offset {
        Some(since) => first_kept.unwrap_or(position.max(since)),
        None => position - returned,
    };
    let missed = params.since_offset.map_or(0, |since| start_offset.saturating_sub(since));
    let bytes = [kept.head.as_slice(), kept.tail.as_slice()].concat();
    let (output, lossy) = capture::text(&bytes);
    Ok(LogsOutput {
        tag: meta(&params.tag),
        output,
        start_offset,
        end_offset: start_offset + returned,
        missed_bytes: missed,
        more: params.since_offset.is_some() && kept.cut() > 0,
        lossy,
        exit_code,
    })
}

/// Waits for a session's end.
pub async fn wait(call: &Call, params: WaitParams) -> Result<WaitOutput, ToolError> {
    let timeout = super::timeout_arg(params.timeout_secs, limits::WAIT_DEFAULT)?;
    call.audit().session = Some(meta(&params.tag));
    let mut reached = call.reach().await?;
    let waiting = sessions::wait(&mut reached.client, &params.tag);
    tokio::pin!(waiting);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + progress::EVERY, progress::EVERY);
    let info = loop {
        tokio::select! {
            info = &mut waiting => break info?,
            _ = ticks.tick() => call.progress.report(format!("waiting for session {} for {} s", meta(&params.tag), call.progress.seconds())),
            () = &mut deadline => {
                return Ok(WaitOutput { tag: meta(&params.tag), state: "running".into(), exit_code: None, signal: None, timed_out: false });
            }
            () = call.cancel.cancelled() => return Err(ToolError::Cancelled),
        }
    };
    let tag = meta(&info.name);
    match (SessionState::try_from(info.state), info.exited) {
        (Ok(SessionState::SessionExited), Some(exited)) => {
            let signal = super::signal_name(&exited);
            let mut audit = call.audit();
            audit.exit_code = match exited.status {
                Some(hutch_proto::v1::exited::Status::Code(code)) => Some(code),
                _ => None,
            };
            audit.signal.clone_from(&signal);
            Ok(WaitOutput {
                tag,
                state: "exited".into(),
                exit_code: Some(crate::exit::of_exited(&exited)?),
                signal,
                timed_out: exited.timed_out,
            })
        }
        (Ok(SessionState::SessionLost), _) => Ok(WaitOutput { tag, state: "lost".into(), exit_code: None, signal: None, timed_out: false }),
        _ => Err(CallError::Protocol(crate::untrusted::protocol::ProtocolError::Unexpected(
            "answered a wait with a session that has not ended",
        ))
        .into()),
    }
}

/// Signals a session.
pub async fn kill(call: &Call, params: KillParams) -> Result<KillOutput, ToolError> {
    let signal = params.signal.unwrap_or_else(|| "TERM".into());
    let signal = signal.strip_prefix("SIG").unwrap_or(&signal).to_owned();
    {
        let mut audit = call.audit();
        audit.session = Some(meta(&params.tag));
        audit.detail = Some(format!("SIG{}", meta(&signal)));
    }
    let mut reached = call.reach().await?;
    sessions::signal(&mut reached.client, &params.tag, &signal).await?;
    Ok(KillOutput { tag: meta(&params.tag), signal: format!("SIG{signal}") })
}

/// The VM's sessions.
pub async fn list(call: &Call, _params: ListParams) -> Result<ListOutput, ToolError> {
    let mut reached = call.reach().await?;
    let list = sessions::list(&mut reached.client).await?;
    let sessions = match meta_json(crate::sessions::table::json(&list)) {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    Ok(ListOutput { sessions })
}
