//! Hook scripts: the project's runtime hook runs in each new VM before the
//! first command (its output shown on stderr, its failure stopping `up`/`run`
//! with its exit code); the user's setup hook runs once in an image being
//! prepared.

use std::path::{Path, PathBuf};

use crate::connect::{self, ConnectError};
use crate::exec::{self, ExecError, Options, Outcome};
use crate::state::{StateDir, VmRecord};

/// Why a hook did not run to success.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The setup hook's file cannot be read.
    #[error("reading the setup hook {}: {source}", script.display())]
    Read {
        /// The script.
        script: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The VM's agent cannot be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The exec that runs the hook failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The script failed; hutch exits with its code.
    #[error("hook {} failed: {why}", script.display())]
    Failed {
        /// The script.
        script: PathBuf,
        /// How it failed.
        why: String,
        /// Its exit code, which hutch passes on.
        code: u8,
    },
}

impl HookError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            HookError::Read { .. } => None,
            HookError::Connect(e) => e.hint(),
            HookError::Exec(e) => e.hint(),
            HookError::Failed { .. } => Some("fix the hook, or run without it (its output is above)".into()),
        }
    }

    /// The failed script's exit code, which hutch passes on (as `run` passes
    /// on its command's).
    pub fn exit_code(&self) -> Option<u8> {
        match self {
            HookError::Failed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Runs the project's runtime hook (`relative` to `workspace`) in the VM, if
/// the project has one.
pub async fn run_runtime(state: &StateDir, record: &VmRecord, workspace: &Path, relative: &str) -> Result<(), HookError> {
    let script = workspace.join(relative);
    if !script.is_file() {
        return Ok(());
    }
    // The guest sees the project at the same path; stdout goes to stderr so a
    // command's own stdout stays clean for pipes.
    let argv = vec!["sh".into(), "-c".into(), r#"exec 1>&2; exec sh "$0""#.into(), script.display().to_string()];
    run_hook(state, record, &script, argv, workspace.display().to_string()).await
}

/// Runs a host-side setup script in the VM (its text is passed to `sh -c`).
pub async fn run_setup(state: &StateDir, record: &VmRecord, script: &Path) -> Result<(), HookError> {
    let text = std::fs::read_to_string(script).map_err(|source| HookError::Read { script: script.to_path_buf(), source })?;
    run_text(state, record, script, &text).await
}

/// Runs the shell script `text` in the VM, from `/`, its output on stderr;
/// `name` is what messages call it.
pub async fn run_text(state: &StateDir, record: &VmRecord, name: &Path, text: &str) -> Result<(), HookError> {
    let argv = vec!["sh".into(), "-c".into(), format!("exec 1>&2\n{text}"), "setup-hook".into()];
    run_hook(state, record, name, argv, String::new()).await
}

async fn run_hook(state: &StateDir, record: &VmRecord, script: &Path, argv: Vec<String>, cwd: String) -> Result<(), HookError> {
    eprintln!("hutch: running hook {}", script.display());
    let options = Options { argv, env: Default::default(), cwd, tty: false, timeout: None, capture: false, no_stdin: true, ask: None };
    let mut client = connect::connect(state, record).await?;
    let finished = exec::run(&mut client, &options).await?;
    match finished.outcome.exit_code() {
        0 => Ok(()),
        code => {
            let why = match &finished.outcome {
                Outcome::StartFailed(f) => f.message.clone(),
                _ => format!("exit code {code}"),
            };
            Err(HookError::Failed { script: script.to_path_buf(), why, code })
        }
    }
}
