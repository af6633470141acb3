//! `hutch exec`'s engine: one Exec stream, driven from the local terminal or
//! pipes, until the remote process has exited and all of its output is out.
//! The same loop ([`Drive`]) serves a session's clients: `exec --keep`,
//! `attach` and `logs` (see [`attach`]).

pub mod ask;
pub mod attach;
pub mod keys;
pub mod output;
pub mod report;
pub mod signals;
pub mod stdin;
pub mod terminal;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::{Stream as FuturesStream, StreamExt};
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{
    Detach, DetachReason, Detached, ExecRequest, ExecResponse, SessionOptions, SignalRequest, Start, StdinMode, TerminalSize, Tty,
    exec_request,
};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::sessions::SessionError;
use crate::transport::{CallError, Client};
use crate::untrusted::ProtocolError;
use crate::untrusted::deadline::Deadline;
use crate::untrusted::protocol::known;
pub use output::Captured;
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
    /// A session could not be started or found.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// hutch was asked to stop (SIGINT, SIGTERM, SIGHUP) before the agent
    /// said the command started: there was nothing to pass the signal to.
    #[error("interrupted by {0} before the command started")]
    Interrupted(Signal),
}

impl ExecError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ExecError::Call(e) => Some(e.hint()),
            ExecError::Session(e) => e.hint(),
            ExecError::Interrupted(_) => None,
        }
    }
}

impl From<ProtocolError> for ExecError {
    fn from(e: ProtocolError) -> Self {
        ExecError::Call(e.into())
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
    /// The VM's `net/` folder and name when its network asks (`mode =
    /// "ask"`): an interactive terminal then prompts (see [`ask`]).
    pub ask: Option<(std::path::PathBuf, String)>,
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
    /// The output kept when `Options::capture` was set.
    pub captured: Option<Captured>,
}

/// How to keep the command as a session (`--detach`, `--keep`).
#[derive(Debug, Clone, Default)]
pub struct SessionSpec {
    /// Its name; empty lets the agent pick one.
    pub name: String,
    /// Return as soon as it runs (`--detach`).
    pub detach: bool,
    /// Output buffer in bytes; 0 for the agent's default.
    pub buffer: u64,
}

/// Runs `options` on the agent behind `client` and waits for the end.
pub async fn run(client: &mut Client, options: &Options) -> Result<Finished, ExecError> {
    run_with(client, options, None).await
}

/// Runs `options`, as a session when `session` says so (see [`run_kept`]).
pub async fn run_as(client: &mut Client, options: &Options, session: Option<&SessionSpec>) -> Result<Finished, ExecError> {
    match session {
        None => run(client, options).await,
        Some(session) => run_kept(client, options, session).await,
    }
}

/// Runs `options` as a session: returns once it runs (`detach`), or stays
/// attached as its writer until it ends or the client detaches (`--keep`).
pub async fn run_kept(client: &mut Client, options: &Options, session: &SessionSpec) -> Result<Finished, ExecError> {
    if session.detach {
        return attach::start_detached(client, options, session).await;
    }
    run_with(client, options, Some(session)).await
}

async fn run_with(client: &mut Client, options: &Options, session: Option<&SessionSpec>) -> Result<Finished, ExecError> {
    let stdin_source = if options.no_stdin { stdin::Source::Null } else { stdin::classify() };
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let start = start_request(options, stdin_source, session);
    tx.send(ExecRequest { kind: Some(exec_request::Kind::Start(start)) })
        .await
        .map_err(|_| ProtocolError::Unexpected("closed the request stream before the start was sent"))?;
    let role = match session {
        None => Role::Exec,
        Some(_) => Role::Session { viewer: false, kill_on_abandon: true },
    };
    let deadline = client.deadline();
    let (responses, first) = first_answer(deadline, "Exec", client.exec(ReceiverStream::new(rx)), CallError::from_status).await?;
    match &first.kind {
        Some(Kind::Started(_) | Kind::StartFailed(_)) => {}
        _ => return Err(ProtocolError::Unexpected("answered an exec with something else than `started` or `start_failed`").into()),
    }
    // Raw mode only now: until the agent answered, Ctrl-C must still reach hutch.
    let raw_mode = if options.tty && matches!(first.kind, Some(Kind::Started(_))) { RawMode::enable() } else { None };
    let _prompt = match &options.ask {
        Some((net_dir, vm)) if stdin_source == stdin::Source::Readable && interactive() => {
            Some(AbortOnDrop(tokio::spawn(ask::prompt(net_dir.clone(), vm.clone(), raw_mode.is_some()))))
        }
        _ => None,
    };
    if stdin_source == stdin::Source::Readable {
        match session {
            Some(_) if raw_mode.is_some() => keys::forward(tx.clone(), true),
            _ => stdin::forward(tx.clone()),
        }
    }
    let drive = Drive { role, resizes: options.tty, capture: options.capture, raw: raw_mode.is_some(), idle: None };
    let finished = drive.run(futures_util::stream::iter([Ok(first)]).chain(responses), tx).await;
    drop(raw_mode);
    finished
}

/// Whether a person is at this end: stdin and stderr are terminals.
fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first answer of a call that starts something (an exec's `started`,
/// an attach's `attached`), with the stream that follows: within the call
/// deadline (an agent that accepts the call and says nothing does not hold
/// hutch), and leaving at once on SIGINT, SIGTERM or SIGHUP, since nothing
/// runs yet to pass them to. `status_error` classifies a failed call.
pub(crate) async fn first_answer<E: Into<ExecError>>(
    deadline: Deadline,
    call: &'static str,
    open: impl Future<Output = Result<tonic::Response<Streaming<ExecResponse>>, Status>>,
    status_error: impl Fn(Status) -> E,
) -> Result<(Streaming<ExecResponse>, ExecResponse), ExecError> {
    let answer = async {
        let mut responses = open.await.map_err(|s| status_error(s).into())?.into_inner();
        match responses.message().await {
            Ok(Some(first)) => Ok((responses, first)),
            Ok(None) => Err(ProtocolError::Unexpected("ended the call without answering it").into()),
            Err(status) => Err(status_error(status).into()),
        }
    };
    tokio::select! {
        answered = deadline.within(call, answer) => answered.map_err(CallError::from)?,
        signal = signals::termination() => match signal {
            Ok(signal) => Err(ExecError::Interrupted(signal)),
            Err(e) => Err(CallError::from(ProtocolError::Refused(format!("cannot listen for signals: {e}"))).into()),
        },
    }
}

/// Which client hutch is, for what local events mean.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// A plain exec: the remote group dies with hutch.
    Exec,
    /// Attached to a session.
    Session {
        /// Watching only: Ctrl-C detaches instead of interrupting.
        viewer: bool,
        /// hutch started the session (`exec --keep`): giving up (a third
        /// Ctrl-C, a closed stdout) kills it, as it kills a plain exec. An
        /// `attach` gives up by detaching.
        kill_on_abandon: bool,
    },
}

impl Role {
    /// `detached` as this client may get it: never for a plain exec, and
    /// with a reason the protocol knows.
    fn check_detached(self, detached: Detached) -> Result<Detached, ProtocolError> {
        if matches!(self, Role::Exec) {
            return Err(ProtocolError::Unexpected("answered a plain exec with `detached`, which only sessions send"));
        }
        match known::<DetachReason>("a detach reason", detached.reason)? {
            DetachReason::Unspecified => Err(ProtocolError::UnknownValue { what: "a detach reason", value: 0 }),
            _ => Ok(detached),
        }
    }
}

/// How long hutch waits for the agent to confirm a detach or a kill before
/// leaving anyway.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// One client's loop: output to the local side, local events to the agent.
pub struct Drive {
    /// What local events mean.
    pub role: Role,
    /// Follow local terminal size changes.
    pub resizes: bool,
    /// Capture output for `--json`.
    pub capture: bool,
    /// The local terminal is raw (line ends need a carriage return).
    pub raw: bool,
    /// A stream that must end by itself (`logs` without `-f`): the longest
    /// the agent may stay silent while hutch waits for its next message.
    pub idle: Option<Deadline>,
}

impl Drive {
    /// Runs until the remote side says how it ended, or hutch gives up.
    /// Every message is checked against what the protocol allows this
    /// client: a plain exec is never `detached`, an exit code is 0 to 255.
    pub async fn run(
        self,
        responses: impl FuturesStream<Item = Result<ExecResponse, Status>> + Unpin,
        tx: mpsc::Sender<ExecRequest>,
    ) -> Result<Finished, ExecError> {
        let mut responses = responses;
        let mut resizes = std::pin::pin!(signals::forward_resizes(tx.clone()));
        let policy = match self.role {
            Role::Exec => signals::Policy::Exec,
            Role::Session { viewer, .. } => signals::Policy::Session { viewer },
        };
        let local = signals::forward(tx.clone(), policy);
        let mut local = std::pin::pin!(async move { local?.await });
        let mut sink = if self.capture { Sink::capture() } else { Sink::local() };
        // Set once hutch has asked to detach or to kill, and is waiting for the answer.
        let mut leaving: Option<(tokio::time::Instant, Outcome)> = None;
        let mut local_done = false;
        let idle_after = self.idle.as_ref().map(Deadline::after);
        let mut silent_until = idle_after.map(|after| tokio::time::Instant::now() + after);
        let outcome = loop {
            let deadline = leaving.as_ref().map(|(at, _)| *at);
            tokio::select! {
                message = responses.next() => match message {
                    Some(Ok(message)) => {
                        match message.kind {
                            Some(Kind::Stdout(data)) => sink.write(Stream::Stdout, data).await,
                            Some(Kind::Stderr(data)) => sink.write(Stream::Stderr, data).await,
                            Some(Kind::Started(started)) => {
                                tracing::debug!(pid = started.pid, "remote process started");
                                if started.session.is_empty() && matches!(self.role, Role::Session { .. }) {
                                    eprintln!("hutch: warning: the agent does not keep sessions (it is older than this hutch): this command ends with hutch{}", if self.raw { "\r" } else { "" });
                                }
                            }
                            Some(Kind::Exited(exited)) => {
                                crate::exit::of_exited(&exited)?;
                                match leaving.take() {
                                    // hutch had the session killed: it reports that, as for a plain exec.
                                    Some((_, outcome @ (Outcome::Abandoned | Outcome::BrokenPipe))) => break outcome,
                                    _ => break Outcome::Exited(exited),
                                }
                            }
                            Some(Kind::StartFailed(failed)) => break Outcome::StartFailed(failed),
                            Some(Kind::Detached(detached)) => break Outcome::Detached(self.role.check_detached(detached)?),
                            Some(Kind::Dropped(dropped)) if matches!(self.role, Role::Session { .. }) => {
                                sink.write(Stream::Stderr, report::dropped_notice(&dropped, self.raw).into()).await;
                            }
                            Some(Kind::Dropped(_)) => return Err(ProtocolError::Unexpected("sent `dropped` to a plain exec, which only sessions have").into()),
                            Some(Kind::Attached(_)) => return Err(ProtocolError::Unexpected("sent `attached` in the middle of a stream").into()),
                            None => {}
                        }
                        silent_until = idle_after.map(|after| tokio::time::Instant::now() + after);
                    }
                    Some(Err(status)) => match leaving {
                        // Leaving anyway: a stream that breaks now ends as asked.
                        Some((_, outcome)) => break outcome,
                        None => return Err(CallError::lost(status).into()),
                    },
                    None => match leaving {
                        Some((_, outcome)) => break outcome,
                        None => return Err(ProtocolError::Unexpected("ended the exec without reporting how the process ended").into()),
                    },
                },
                _ = sink.broken_pipe(), if leaving.is_none() => match self.role {
                    Role::Session { kill_on_abandon: true, .. } => leaving = Some(kill(&tx, Outcome::BrokenPipe).await),
                    _ => break Outcome::BrokenPipe,
                },
                result = &mut local, if !local_done => {
                    local_done = true;
                    match result {
                        Ok(signals::Local::Detach) => leaving = Some(detach(&tx).await),
                        Ok(signals::Local::Abandon) => match self.role {
                            Role::Session { kill_on_abandon: true, .. } => leaving = Some(kill(&tx, Outcome::Abandoned).await),
                            // A client that did not start the session leaves it running.
                            Role::Session { kill_on_abandon: false, .. } => leaving = Some(detach(&tx).await),
                            Role::Exec => break Outcome::Abandoned,
                        },
                        Err(e) => {
                            eprintln!("hutch: warning: cannot forward signals: {e}");
                            break Outcome::Abandoned;
                        }
                    }
                }
                result = &mut resizes, if self.resizes => {
                    if let Err(e) = result {
                        eprintln!("hutch: warning: cannot follow terminal resizes: {e}");
                    }
                }
                () = sleep_until_opt(deadline) => {
                    if let Some((_, outcome)) = leaving.take() {
                        break outcome;
                    }
                }
                () = sleep_until_opt(silent_until), if leaving.is_none() => {
                    if let Some(idle) = &self.idle {
                        return Err(CallError::from(idle.expired("the rest of the session's output")).into());
                    }
                }
            }
        };
        sink.finish();
        Ok(Finished { outcome, captured: sink.captured() })
    }
}

/// Asks the agent to detach this client; hutch leaves once it confirms, or
/// after [`GOODBYE_WAIT`].
async fn detach(tx: &mpsc::Sender<ExecRequest>) -> (tokio::time::Instant, Outcome) {
    let _ = tx.send(ExecRequest { kind: Some(exec_request::Kind::Detach(Detach {})) }).await;
    let detached = Detached { reason: DetachReason::DetachRequested as i32, session: String::new() };
    (tokio::time::Instant::now() + GOODBYE_WAIT, Outcome::Detached(detached))
}

/// Asks the agent to kill the session's group; hutch leaves with `outcome`
/// once the end is confirmed, or after [`GOODBYE_WAIT`].
async fn kill(tx: &mpsc::Sender<ExecRequest>, outcome: Outcome) -> (tokio::time::Instant, Outcome) {
    let _ = tx.send(ExecRequest { kind: Some(exec_request::Kind::Signal(SignalRequest { name: "KILL".into() })) }).await;
    (tokio::time::Instant::now() + GOODBYE_WAIT, outcome)
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn start_request(options: &Options, stdin_source: stdin::Source, session: Option<&SessionSpec>) -> Start {
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
        session: session.map(|s| SessionOptions { name: s.name.clone(), detach: s.detach, buffer_bytes: s.buffer }),
    }
}
