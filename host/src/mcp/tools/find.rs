//! `glob` and `search`: finding files and lines in the guest with its
//! ripgrep (`rg`), which honours `.gitignore` as a developer's tools do, run
//! as the user commands run as. Its output is parsed from a capture that
//! keeps its start: past the cap, rg is stopped and the result says it was
//! cut. Paths and lines come from the guest: bounded and escaped.

use rmcp::model::{Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::guest_failure;
use crate::mcp::call::Call;
use crate::mcp::error::ToolError;
use crate::mcp::guest_text::{meta, meta_bytes};
use crate::mcp::limits;
use crate::mcp::run::{End, Ran};

/// `glob`'s name.
pub const GLOB: &str = "glob";
/// `search`'s name.
pub const SEARCH: &str = "search";

/// Runs rg in folder `$1` with the remaining arguments.
const RG_IN: &str = r#"cd -- "$1" || exit 2
shift
exec rg "$@""#;

/// `glob`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobParams {
    /// A glob such as `**/*.rs`, `src/*.ts` or `Cargo.toml` (one without a `/` matches names in any folder).
    pub pattern: String,
    /// The folder to search (default: the project folder). Paths are returned relative to it.
    pub path: Option<String>,
    /// Include hidden files and folders (names starting with `.`).
    #[serde(default)]
    pub hidden: bool,
    /// Include files that .gitignore and .ignore leave out.
    #[serde(default)]
    pub no_ignore: bool,
    /// Paths to return at most (default 200, at most 5000).
    pub max_results: Option<usize>,
}

/// What `glob` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GlobOutput {
    /// Matching files, relative to the folder searched, sorted.
    pub files: Vec<String>,
    /// There were more than `max_results`.
    pub truncated: bool,
    /// What rg said about files it could not read, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<String>,
}

/// `search`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// A regular expression (Rust/ripgrep syntax), or a plain string with `fixed_strings`.
    pub pattern: String,
    /// A file or folder to search (default: the project folder).
    pub path: Option<String>,
    /// Only files matching this glob (`*.rs`, `src/**/*.ts`).
    pub glob: Option<String>,
    /// Match case-insensitively.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Take `pattern` literally.
    #[serde(default)]
    pub fixed_strings: bool,
    /// Include hidden files and folders.
    #[serde(default)]
    pub hidden: bool,
    /// Include files that .gitignore and .ignore leave out.
    #[serde(default)]
    pub no_ignore: bool,
    /// Matching lines to return at most (default 200, at most 5000).
    pub max_results: Option<usize>,
}

/// One matching line.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Match {
    /// The file.
    pub path: String,
    /// The line's number, from 1.
    pub line: u64,
    /// The line (cut at 500 characters).
    pub text: String,
}

/// What `search` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchOutput {
    /// Matching lines, in file order.
    pub matches: Vec<Match>,
    /// There were more than `max_results` (or more output than hutch reads).
    pub truncated: bool,
    /// What rg said about files it could not read, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<String>,
}

/// `glob`'s definition.
pub fn glob_tool() -> Tool {
    Tool::new(
        GLOB,
        "Find files in the VM by name pattern (with ripgrep in the guest: files that .gitignore leaves out are skipped \
         unless `no_ignore`, hidden ones unless `hidden`). Returns paths relative to `path`, sorted.",
        serde_json::Map::new(),
    )
    .with_input_schema::<GlobParams>()
    .with_output_schema::<GlobOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// `search`'s definition.
pub fn search_tool() -> Tool {
    Tool::new(
        SEARCH,
        "Search file contents in the VM for a regular expression (ripgrep in the guest; .gitignore honoured). Returns \
         matching lines with their file and line number; narrow with `path` and `glob`. Binary files are skipped.",
        serde_json::Map::new(),
    )
    .with_input_schema::<SearchParams>()
    .with_output_schema::<SearchOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// Finds files.
pub async fn glob(call: &Call, params: GlobParams) -> Result<GlobOutput, ToolError> {
    let max = params.max_results.unwrap_or(limits::MATCHES_DEFAULT).clamp(1, limits::MATCHES_MAX);
    let mut args = vec!["--files".to_owned(), "--null".into(), "--sort".into(), "path".into(), "--glob".into(), params.pattern.clone()];
    flags(&mut args, params.hidden, params.no_ignore);
    let ran = rg(call, params.path, args, &params.pattern, true).await?;
    let mut files: Vec<String> = ran.stdout.head.split(|b| *b == 0).filter(|p| !p.is_empty()).map(meta_bytes).collect();
    // The last name may be cut by the cap.
    let mut truncated = matches!(ran.end, End::Cut);
    if truncated {
        files.pop();
    }
    truncated |= files.len() > max;
    files.truncate(max);
    Ok(GlobOutput { files, truncated, warnings: warnings(&ran) })
}

/// Searches contents.
pub async fn search(call: &Call, params: SearchParams) -> Result<SearchOutput, ToolError> {
    let max = params.max_results.unwrap_or(limits::MATCHES_DEFAULT).clamp(1, limits::MATCHES_MAX);
    let mut args = vec!["--json".to_owned(), "--max-count".into(), max.to_string()];
    flags(&mut args, params.hidden, params.no_ignore);
    if params.case_insensitive {
        args.push("--ignore-case".into());
    }
    if params.fixed_strings {
        args.push("--fixed-strings".into());
    }
    if let Some(glob) = &params.glob {
        args.extend(["--glob".into(), glob.clone()]);
    }
    args.extend(["--regexp".into(), params.pattern.clone()]);
    let ran = rg(call, params.path, args, &params.pattern, false).await?;
    let mut matches = Vec::new();
    for line in ran.stdout.head.split(|b| *b == b'\n') {
        if let Some(found) = json_match(line) {
            matches.push(found);
        }
    }
    let truncated = matches.len() > max || matches!(ran.end, End::Cut);
    matches.truncate(max);
    Ok(SearchOutput { matches, truncated, warnings: warnings(&ran) })
}

fn flags(args: &mut Vec<String>, hidden: bool, no_ignore: bool) {
    args.extend(["--color".into(), "never".into()]);
    if hidden {
        args.push("--hidden".into());
    }
    if no_ignore {
        args.push("--no-ignore".into());
    }
}

/// Runs rg for `path` (default: the project folder): `glob` from inside it
/// (so paths come relative to it), `search` on it. rg's exit 1 (nothing
/// found) is a result, its exit 2 with output a partial one.
async fn rg(call: &Call, path: Option<String>, args: Vec<String>, pattern: &str, inside: bool) -> Result<Ran, ToolError> {
    let mut reached = call.reach().await?;
    let cwd = Call::default_cwd(&reached);
    let shown = path.clone().unwrap_or_else(|| if cwd.is_empty() { ".".into() } else { cwd.clone() });
    {
        let mut audit = call.audit();
        audit.path = Some(call.redact(&shown));
        audit.detail = Some(call.redact(pattern));
    }
    let argv: Vec<String> = if inside {
        ["sh", "-c", RG_IN, "sh", shown.as_str()].into_iter().map(str::to_owned).chain(args).collect()
    } else {
        std::iter::once("rg".to_owned()).chain(args).chain(path.into_iter().flat_map(|p| ["--".to_owned(), p])).collect()
    };
    let ran = call.run(&mut reached.client, call.command(argv, cwd)).await?;
    match &ran.end {
        End::Exited(exited) => match crate::exit::of_exited(exited)? {
            0 | 1 => {}
            2 if !ran.stdout.head.is_empty() => {}
            127 => return Err(missing()),
            _ => return Err(guest_failure(&ran, &format!("cannot search {}", meta(&shown)))),
        },
        End::Cut => {}
        End::StartFailed(failed) if failed.error == hutch_proto::v1::StartError::NotFound as i32 => return Err(missing()),
        End::StartFailed(failed) => return Err(super::start_failed(failed)),
        End::Cancelled => return Err(ToolError::Cancelled),
    }
    Ok(ran)
}

fn missing() -> ToolError {
    ToolError::Missing { program: "ripgrep (rg)", needed_for: "glob and search run it; Debian and Ubuntu call its package ripgrep" }
}

fn warnings(ran: &Ran) -> Option<String> {
    (!ran.stderr.head.is_empty()).then(|| meta_bytes(&ran.stderr.head))
}

/// A `match` message of `rg --json`: path and line as text or base64 bytes.
fn json_match(line: &[u8]) -> Option<Match> {
    #[derive(Deserialize)]
    struct Message {
        #[serde(rename = "type")]
        kind: String,
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        path: Option<Text>,
        lines: Option<Text>,
        line_number: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Text {
        text: Option<String>,
        bytes: Option<String>,
    }
    fn decode(text: Text) -> Option<Vec<u8>> {
        use base64::Engine;
        match (text.text, text.bytes) {
            (Some(text), _) => Some(text.into_bytes()),
            (None, Some(bytes)) => base64::engine::general_purpose::STANDARD.decode(bytes).ok(),
            (None, None) => None,
        }
    }
    let message: Message = serde_json::from_slice(line).ok()?;
    if message.kind != "match" {
        return None;
    }
    let data = message.data?;
    let path = decode(data.path?)?;
    let mut text = decode(data.lines?)?;
    while text.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        text.pop();
    }
    let line: String = String::from_utf8_lossy(&text).chars().take(limits::LINE_CHARS).collect();
    Some(Match { path: meta_bytes(&path), line: data.line_number.unwrap_or(0), text: meta(&line) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rg_json_matches_are_read_bounded_and_escaped() {
        let line = br#"{"type":"match","data":{"path":{"text":"src/a.rs"},"lines":{"text":"fn main() {\n"},"line_number":1,"absolute_offset":0,"submatches":[]}}"#;
        let found = json_match(line).unwrap();
        assert_eq!((found.path.as_str(), found.line, found.text.as_str()), ("src/a.rs", 1, "fn main() {"));
        // Bytes that are not UTF-8 come as base64; control characters are escaped.
        let line = br#"{"type":"match","data":{"path":{"bytes":"YRtbMko="},"lines":{"text":"x\u001b]0;t\u0007"},"line_number":7}}"#;
        let found = json_match(line).unwrap();
        assert_eq!((found.path.as_str(), found.text.as_str()), ("a\\u{1b}[2J", "x\\u{1b}]0;t\\u{7}"));
        let long =
            format!(r#"{{"type":"match","data":{{"path":{{"text":"p"}},"lines":{{"text":"{}"}},"line_number":2}}}}"#, "y".repeat(10_000));
        assert_eq!(json_match(long.as_bytes()).unwrap().text.chars().count(), limits::LINE_CHARS);
        assert!(json_match(br#"{"type":"begin","data":{"path":{"text":"p"}}}"#).is_none());
        assert!(json_match(b"{not json").is_none());
    }
}
