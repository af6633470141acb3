//! Hook scripts: the project's runtime hook runs in each new VM before the
//! first command (its output shown on stderr, its failure stopping `up`/`run`
//! with its exit code); the user's setup hook runs once in an image being
//! prepared.

use std::path::Path;

use crate::error::Error;
use crate::exec::{self, Options, Outcome};
use crate::target::Target;

/// Runs the project's runtime hook (`relative` to `workspace`) in the VM, if
/// the project has one.
pub async fn run_runtime(target: &Target, workspace: &Path, relative: &str) -> Result<(), Error> {
    let script = workspace.join(relative);
    if !script.is_file() {
        return Ok(());
    }
    // The guest sees the project at the same path; stdout goes to stderr so a
    // command's own stdout stays clean for pipes.
    let argv = vec!["sh".into(), "-c".into(), r#"exec 1>&2; exec sh "$0""#.into(), script.display().to_string()];
    run_hook(target, &script, argv, workspace.display().to_string()).await
}

/// Runs a host-side setup script in the VM (its text is passed to `sh -c`).
pub async fn run_setup(target: &Target, script: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(script).map_err(|e| Error::local(&format!("reading the setup hook {}", script.display()), e))?;
    let argv = vec!["sh".into(), "-c".into(), format!("exec 1>&2\n{text}"), "setup-hook".into()];
    run_hook(target, script, argv, String::new()).await
}

async fn run_hook(target: &Target, script: &Path, argv: Vec<String>, cwd: String) -> Result<(), Error> {
    eprintln!("hutch: running hook {}", script.display());
    let options = Options { argv, env: Default::default(), cwd, tty: false, timeout: None, capture: false, no_stdin: true };
    let mut client = target.connect().await?;
    let finished = exec::run(&mut client, &options).await?;
    match finished.outcome.exit_code() {
        0 => Ok(()),
        code => {
            let why = match &finished.outcome {
                Outcome::StartFailed(f) => f.message.clone(),
                _ => format!("exit code {code}"),
            };
            Err(Error::Hook { script: script.to_path_buf(), why, code })
        }
    }
}
