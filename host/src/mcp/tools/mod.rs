//! The tools `hutch mcp` serves, each in the file of its family with its
//! arguments, its result, its JSON schemas (from those types) and a
//! description a model can act on; here, the list and the dispatch, and what
//! the tools share: reading arguments, and turning what the guest answered
//! into errors.
//!
//! Argument types that share fields (`exec` and `session_start`'s command,
//! `glob` and `search`'s ignore flags) repeat them rather than
//! `#[serde(flatten)]` a common struct: serde cannot refuse unknown fields
//! through a flatten, and a misspelt argument must be an error a model sees.

pub mod diff;
pub mod exec;
pub mod files;
pub mod find;
pub mod network;
pub mod sessions;

use std::time::Duration;

use base64::Engine;
use hutch_proto::v1::{Exited, StartError, StartFailed, exited};
use rmcp::model::{JsonObject, Tool};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::call::Call;
use super::error::ToolError;
use super::guest_text::{meta, meta_bytes};
use super::limits;
use super::run::{End, Ran};
use super::vm::Place;

/// Every tool, as `tools/list` gives them.
pub fn catalogue() -> Vec<Tool> {
    vec![
        exec::tool(),
        files::read_tool(),
        files::write_tool(),
        files::list_tool(),
        find::glob_tool(),
        find::search_tool(),
        sessions::start_tool(),
        sessions::logs_tool(),
        sessions::wait_tool(),
        sessions::kill_tool(),
        sessions::list_tool(),
        diff::tool(),
        network::tool(),
    ]
}

/// Runs tool `name` with `arguments`; its structured result.
pub async fn dispatch(name: &str, arguments: JsonObject, call: &Call, place: &Place) -> Result<Value, ToolError> {
    match name {
        exec::NAME => done(exec::exec(call, parse(name, arguments)?).await),
        files::READ => done(files::read(call, parse(name, arguments)?).await),
        files::WRITE => done(files::write(call, parse(name, arguments)?).await),
        files::LIST => done(files::list(call, parse(name, arguments)?).await),
        find::GLOB => done(find::glob(call, parse(name, arguments)?).await),
        find::SEARCH => done(find::search(call, parse(name, arguments)?).await),
        sessions::START => done(sessions::start(call, parse(name, arguments)?).await),
        sessions::LOGS => done(sessions::logs(call, parse(name, arguments)?).await),
        sessions::WAIT => done(sessions::wait(call, parse(name, arguments)?).await),
        sessions::KILL => done(sessions::kill(call, parse(name, arguments)?).await),
        sessions::LIST => done(sessions::list(call, parse(name, arguments)?).await),
        diff::NAME => done(diff::diff(call, parse(name, arguments)?).await),
        network::NAME => done(network::network(call, place, parse(name, arguments)?)),
        _ => Err(ToolError::Invalid(format!("there is no tool named {:?}: tools/list gives hutch's tools", meta(name)))),
    }
}

/// A tool's arguments, or why they are not what it takes.
fn parse<T: DeserializeOwned>(tool: &str, arguments: JsonObject) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(arguments)).map_err(|e| ToolError::Invalid(format!("bad arguments for {tool}: {e}")))
}

fn done<T: Serialize>(result: Result<T, ToolError>) -> Result<Value, ToolError> {
    let value = result?;
    serde_json::to_value(value).map_err(|e| ToolError::Guest(format!("cannot encode the result: {e}")))
}

/// The command an `argv` or a `command` (for `sh -c`) asks for.
pub fn command_line(argv: Option<Vec<String>>, command: Option<String>) -> Result<Vec<String>, ToolError> {
    match (argv, command) {
        (Some(argv), None) if !argv.is_empty() => Ok(argv),
        (Some(_), None) => Err(ToolError::Invalid("`argv` is empty: give the program and its arguments".into())),
        (None, Some(command)) if !command.trim().is_empty() => Ok(vec!["sh".into(), "-c".into(), command]),
        (None, Some(_)) => Err(ToolError::Invalid("`command` is empty".into())),
        (Some(_), Some(_)) => Err(ToolError::Invalid("give `argv` or `command`, not both".into())),
        (None, None) => Err(ToolError::Invalid("give the command to run: `argv` (a list) or `command` (a shell command line)".into())),
    }
}

/// Decodes base64 argument `name`.
pub fn base64_arg(name: &str, text: &str) -> Result<Vec<u8>, ToolError> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| ToolError::Invalid(format!("`{name}` is not base64: {e}")))
}

/// A byte cap from a client: `default` when absent, at most [`limits::OUTPUT_MAX`].
pub fn output_cap(asked: Option<usize>, default: usize) -> Result<usize, ToolError> {
    match asked {
        Some(0) => Err(ToolError::Invalid("a byte count of 0 returns nothing: give at least 1".into())),
        Some(n) => Ok(n.min(limits::OUTPUT_MAX)),
        None => Ok(default),
    }
}

/// A timeout in seconds from a client: `default` when absent, at most [`limits::MAX_TIMEOUT`].
pub fn timeout_arg(secs: Option<f64>, default: Duration) -> Result<Duration, ToolError> {
    match secs {
        None => Ok(default),
        Some(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs.min(limits::MAX_TIMEOUT.as_secs_f64()))),
        Some(secs) => Err(ToolError::Invalid(format!("timeout_secs must be a positive number of seconds, not {secs}"))),
    }
}

/// A start failure as the error a shell would give, with its exit code.
pub fn start_failed(failed: &StartFailed) -> ToolError {
    let code = match StartError::try_from(failed.error) {
        Ok(StartError::NotFound) => " (exit code 127: not found)",
        Ok(StartError::NotExecutable) => " (exit code 126: not executable)",
        _ => "",
    };
    ToolError::Guest(format!("the command did not start: {}{code}", meta(&failed.message)))
}

/// The signal that ended a command, by its name (`SIGTERM`).
pub fn signal_name(exited: &Exited) -> Option<String> {
    match exited.status {
        Some(exited::Status::Signal(number)) => {
            Some(if exited.signal_name.is_empty() { number.to_string() } else { format!("SIG{}", meta(&exited.signal_name)) })
        }
        _ => None,
    }
}

/// What a guest command behind a tool said when it failed (`what`, then its
/// stderr, escaped and cut, or how it ended).
pub fn guest_failure(ran: &Ran, what: &str) -> ToolError {
    let said = meta_bytes(&ran.stderr.head);
    let said = said.trim();
    let how = match &ran.end {
        End::Exited(exited) => match crate::exit::of_exited(exited) {
            Ok(code) => format!("exit code {code}"),
            Err(refused) => return refused.into(),
        },
        End::StartFailed(failed) => return start_failed(failed),
        End::Cancelled => return ToolError::Cancelled,
        End::Cut => "more output than hutch reads".into(),
    };
    if said.is_empty() { ToolError::Guest(format!("{what} ({how})")) } else { ToolError::Guest(format!("{what}: {said}")) }
}

impl From<crate::exec::ExecError> for ToolError {
    fn from(error: crate::exec::ExecError) -> Self {
        match error {
            crate::exec::ExecError::Call(e) => e.into(),
            crate::exec::ExecError::Session(e) => e.into(),
            // hutch mcp itself was told to stop: the call ends with it.
            crate::exec::ExecError::Interrupted(_) => ToolError::Cancelled,
        }
    }
}
