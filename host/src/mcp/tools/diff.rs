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
    /// The patch was longer than 4 MiB: it holds the whole files that fit, in order.
    pub truncated: bool,
    /// What the user should know: files the host changed since the snapshot was taken (the patch is against the
    /// host's current version), files too large to diff, paths hutch refused (in `.git`, through a symlink).
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
    // The same checked stream `hutch diff` prints, kept whole file by whole
    // file up to PATCH_MAX; warnings escaped and counted.
    let warnings = std::sync::Mutex::new(Vec::new());
    let note = |warning: String| {
        let mut warnings = warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if warnings.len() < limits::DIFF_WARNINGS_MAX {
            warnings.push(meta(&warning));
        }
    };
    let (mut text, mut truncated) = (Vec::new(), false);
    let mut each = |change: crate::sync::diff::Change| {
        let mut one = Vec::new();
        crate::sync::diff::render(&change, &mut one, &mut |w| note(w))
            .map_err(|e| crate::sync::SyncError::Local { what: "rendering the patch".into(), source: e })?;
        if truncated || text.len() + one.len() > limits::PATCH_MAX {
            truncated = true;
        } else {
            text.extend_from_slice(&one);
        }
        Ok(())
    };
    let mut warn = |w| note(w);
    let tally = tokio::select! {
        tally = crate::sync::diff::changes(&mut reached.client, &root, &mut warn, &mut each) => tally?,
        () = call.cancel.cancelled() => return Err(ToolError::Cancelled),
    };
    Ok(DiffOutput {
        patch: String::from_utf8_lossy(&text).into_owned(),
        files: tally.changes,
        truncated,
        warnings: warnings.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
    })
}
