//! `hutch exec`'s engine: one Exec stream, driven from the local terminal or
//! pipes, until the remote process has exited and all of its output is out.

pub mod output;
pub mod report;
pub mod signals;
pub mod stdin;
pub mod terminal;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{ExecRequest, Start, StdinMode, TerminalSize, Tty, exec_request};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::transport::{CallError, Client};
use output::{Sink, Stream};
pub use report::Outcome;
use terminal::RawMode;

/// Requests that may wait to be sent (stdin chunks, signals, resizes).
const REQUEST_QUEUE: usize = 16;

/// Why an exec failed before hutch learnt how the process ended.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The agent refused or failed the Exec call, or the connection broke.
    #[error(transparent)]
    Call(#[from] CallError),
}

impl ExecError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ExecError::Call(e) => Some(e.hint()),
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Environment to add in the guest.
    pub env: HashMap<String, String>,
    /// Working directory in the guest (empty: the agent's default).
    pub cwd: String,
    /// Run on a remote PTY.
    pub tty: bool,
    /// Kill the process group after this long.
    pub timeout: Option<Duration>,
    /// Capture output for a JSON report instead of writing it out.
    pub capture: bool,
    /// Do not forward local stdin (the process gets /dev/null).
    pub no_stdin: bool,
}

impl Options {
    /// Adds environment entries that flags did not set already (flags win):
    /// the configuration's `env`, for `exec` and `run` alike.
    pub fn add_env(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        for (key, value) in pairs {
            self.env.entry(key).or_insert(value);
        }
    }
}

/// The result of one exec: how it ended, and its output if captured.
pub struct Finished {
    /// How the process ended (or why it never started).
    pub outcome: Outcome,
    /// Captured (stdout, stderr) when `Options::capture` was set.
    pub captured: Option<(Vec<u8>, Vec<u8>)>,
}

/// Runs `options` on the agent behind `client` and waits for the end.
pub async fn run(client: &mut Client, options: &Options) -> Result<Finished, ExecError> {
    let stdin_source = if options.no_stdin { stdin::Source::Null } else { stdin::classify() };
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let start = start_request(options, stdin_source);
    tx.send(ExecRequest { kind: Some(exec_request::Kind::Start(start)) })
        .await
        .map_err(|_| CallError::Protocol("request queue closed".into()))?;

    let raw_mode = if options.tty { RawMode::enable() } else { None };
    let mut responses = client.exec(ReceiverStream::new(rx)).await.map_err(CallError::from_status)?.into_inner();

    if stdin_source == stdin::Source::Readable {
        stdin::forward(tx.clone());
    }
    let mut resizes = std::pin::pin!(signals::forward_resizes(tx.clone()));
    let resizes_active = options.tty;
    let mut interrupts = std::pin::pin!(signals::forward(tx.clone()));
    drop(tx);

    let mut sink = if options.capture { Sink::capture() } else { Sink::local() };
    let outcome = loop {
        tokio::select! {
            message = responses.next() => match message {
                Some(Ok(message)) => match message.kind {
                    Some(Kind::Stdout(data)) => sink.write(Stream::Stdout, data).await,
                    Some(Kind::Stderr(data)) => sink.write(Stream::Stderr, data).await,
                    Some(Kind::Started(started)) => tracing::debug!(pid = started.pid, "remote process started"),
                    Some(Kind::Exited(exited)) => break Outcome::Exited(exited),
                    Some(Kind::StartFailed(failed)) => break Outcome::StartFailed(failed),
                    None => {}
                },
                Some(Err(status)) => return Err(CallError::lost(status).into()),
                None => return Err(CallError::Protocol("the agent ended the exec without reporting how the process ended".into()).into()),
            },
            _ = sink.broken_pipe() => break Outcome::BrokenPipe,
            result = &mut interrupts => {
                if let Err(e) = result {
                    eprintln!("hutch: warning: cannot forward signals: {e}");
                }
                break Outcome::Abandoned;
            }
            result = &mut resizes, if resizes_active => {
                if let Err(e) = result {
                    eprintln!("hutch: warning: cannot follow terminal resizes: {e}");
                }
            }
        }
    };
    sink.finish();
    drop(raw_mode);
    Ok(Finished { outcome, captured: sink.captured() })
}

fn start_request(options: &Options, stdin_source: stdin::Source) -> Start {
    let tty = options.tty.then(|| {
        let (rows, cols) = terminal::size().unwrap_or((0, 0));
        Tty { term: std::env::var("TERM").unwrap_or_default(), size: Some(TerminalSize { rows: rows.into(), cols: cols.into() }) }
    });
    Start {
        argv: options.argv.clone(),
        env: options.env.clone(),
        cwd: options.cwd.clone(),
        tty,
        timeout_ms: options.timeout.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
        stdin: match stdin_source {
            stdin::Source::Null => StdinMode::StdinNull,
            stdin::Source::Readable => StdinMode::StdinPipe,
        } as i32,
        tag: format!("hutch-{}", std::process::id()),
    }
}
