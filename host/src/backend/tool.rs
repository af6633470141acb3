//! Running a VM manager's command-line tool (`tart`, `limactl`) and turning
//! its failures into [`BackendError`]s that name the command and quote what
//! the tool said.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::backend::BackendError;

/// A VM manager's CLI.
#[derive(Clone, Debug)]
pub struct Tool {
    program: PathBuf,
    install: &'static str,
}

impl Tool {
    /// `program` (a name looked up in PATH, or a path); `install` says how to
    /// get it when it is missing.
    pub fn new(program: impl Into<PathBuf>, install: &'static str) -> Tool {
        Tool { program: program.into(), install }
    }

    /// A command running the tool with `args`, for callers that need more
    /// control (a detached `tart run`).
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(args);
        cmd
    }

    /// Runs the tool to completion; returns its stdout, or the failure with
    /// the tool's own message.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, BackendError> {
        self.finish(args, self.output(self.command(args))?)
    }

    /// [`Tool::run`] in folder `dir` (for tools that write files into the
    /// current folder).
    pub fn run_in<S: AsRef<OsStr>>(&self, dir: &std::path::Path, args: &[S]) -> Result<String, BackendError> {
        let mut cmd = self.command(args);
        cmd.current_dir(dir);
        self.finish(args, self.output(cmd)?)
    }

    fn finish<S: AsRef<OsStr>>(&self, args: &[S], output: Output) -> Result<String, BackendError> {
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(BackendError::Command { command: self.shown(args), why: why(&output) })
    }

    /// Whether the tool runs `args` successfully (a feature probe such as
    /// `limactl clone --help`); a missing tool is still an error.
    pub fn succeeds<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<bool, BackendError> {
        Ok(self.output(self.command(args))?.status.success())
    }

    /// The missing-tool error, for a failed spawn of [`Tool::command`].
    pub fn spawn_error(&self, e: std::io::Error) -> BackendError {
        match e.kind() {
            std::io::ErrorKind::NotFound => self.missing(),
            _ => BackendError::Io { what: format!("running {}", self.program.display()), source: e },
        }
    }

    /// The command line, as shown in messages.
    pub fn shown<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let name = self.program.file_name().unwrap_or(self.program.as_os_str()).to_string_lossy().into_owned();
        let mut words = vec![name];
        words.extend(args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()));
        words.join(" ")
    }

    fn output(&self, mut cmd: Command) -> Result<Output, BackendError> {
        tracing::debug!("running {:?}", cmd);
        cmd.stdin(Stdio::null()).output().map_err(|e| self.spawn_error(e))
    }

    fn missing(&self) -> BackendError {
        BackendError::MissingTool { tool: self.program.display().to_string(), install: self.install.to_owned() }
    }
}

/// The tool's last words: the last non-empty line of stderr (or stdout), else
/// its exit status.
fn why(output: &Output) -> String {
    let last_line = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned)
    };
    last_line(&output.stderr).or_else(|| last_line(&output.stdout)).unwrap_or_else(|| output.status.to_string())
}
