//! `diff`: for a VM started with `--ro`, the guest's changes to its copy of
//! the project as a patch for `git apply`, as `hutch diff` prints it. (A VM
//! that shares the project writes to it directly: there is nothing to diff.)

use rmcp::model::{Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mcp::call::Call;
use crate::mcp::error::ToolError;
use crate::mcp::guest_text::meta;
use crate::mcp::limits;
use crate::target::Target;

/// The tool's name.
pub const NAME: &str = "diff";

/// `diff`'s arguments: none.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {}

/// What `diff` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffOutput {
    /// A git-style patch of the guest's changes (empty when there are none).
    pub patch: String,
    /// Files changed.
    pub files: usize,
    /// The patch was longer than 4 MiB and was cut there.
    pub truncated: bool,
    /// Files the host changed since the snapshot was taken (the patch is against the host's current version).
    pub warnings: Vec<String>,
}

/// The tool's definition.
pub fn tool() -> Tool {
    Tool::new(
        NAME,
        "For a VM started with --ro (the project copied into the VM, nothing of the host writable): the changes made \
         in the VM's copy since it was taken, as a git-style patch the user can review and `git apply` on the host. \
         A VM that shares the project writes to it directly, so there it says there is nothing to diff.",
        serde_json::Map::new(),
    )
    .with_input_schema::<DiffParams>()
    .with_output_schema::<DiffOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// The guest's changes.
pub async fn diff(call: &Call, _params: DiffParams) -> Result<DiffOutput, ToolError> {
    let mut reached = call.reach().await?;
    let root = match &reached.target {
        Target::Vm { record, .. } => match (&record.ro, &record.workspace) {
            (Some(_), Some(root)) => root.clone(),
            _ => {
                return Err(ToolError::NotApplicable(format!(
                    "VM {} shares the project with the host: its changes are already in the project (git diff there shows them)",
                    record.name
                )));
            }
        },
        Target::Agent { .. } => {
            return Err(ToolError::NotApplicable(
                "the agent was given by address, not a --ro VM hutch manages: no snapshot to diff".into(),
            ));
        }
    };
    call.audit().path = Some(call.redact(&root.display().to_string()));
    let patch = tokio::select! {
        patch = crate::sync::diff::diff(&mut reached.client, &root) => patch?,
        () = call.cancel.cancelled() => return Err(ToolError::Cancelled),
    };
    let mut text = patch.text;
    let truncated = text.len() > limits::PATCH_MAX;
    if truncated {
        let mut end = limits::PATCH_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Ok(DiffOutput { patch: text, files: patch.files, truncated, warnings: patch.warnings.iter().map(|w| meta(w)).collect() })
}
