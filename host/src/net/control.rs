//! The network process's control socket: how `hutch allow`, `hutch deny`,
//! `hutch up` and the prompts of `mode = "ask"` change a running VM's
//! network without restarting it.
//!
//! A Unix socket, `net/control.sock` in the VM's folder (mode 0600 in a
//! 0700 folder: host-only, like everything the policy is made of; the guest
//! has no way to it). One JSON object per line each way: a [`Request`], then
//! one [`Reply`]; a `watch` request instead keeps the connection open,
//! sending [`AskEvent`]s and taking [`Request::Answer`]s, and holds
//! questions (see [`super::ask`]) for as long as it stays open.
//!
//! The peer is the host user's own hutch, but lines are still bounded and
//! malformed ones answered with an error, not trusted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::ask::{Answer, AskEvent, Question};
use super::context::Context;
use super::policy::{Policy, PolicyFile, Verdict};
use super::route::Route;
use crate::audit::{PolicyChange, What};
use crate::config::network::Rule;
use crate::config::pattern::HostPattern;

/// The socket's name in the VM's `net/` folder.
pub const SOCKET: &str = "control.sock";

/// Longest line either side sends (a policy with thousands of rules fits).
const MAX_LINE: usize = 1 << 20;

/// How long a client waits for the reply to a request.
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// The control socket of the VM whose `net/` folder is `net_dir`.
pub fn socket(net_dir: &Path) -> PathBuf {
    net_dir.join(SOCKET)
}

/// What a rule change asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Allow from now on (`hutch allow`).
    Allow,
    /// Deny from now on (`hutch deny`).
    Deny,
    /// Let the requests waiting now through, add no rule (`hutch allow --once`).
    Once,
}

/// One rule change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What to do.
    pub kind: ChangeKind,
    /// The pattern, as the user wrote it.
    pub pattern: String,
    /// Where the rule comes from, as the audit log will name it
    /// (`hutch allow`, or `FILE:LINE` when it was also saved).
    pub source: String,
    /// Where it was saved, if it was.
    #[serde(default)]
    pub saved: Option<String>,
}

/// A request to the network process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Change rules.
    Change {
        /// The changes, in order.
        changes: Vec<Change>,
        /// Who asks (`hutch allow`), for the audit log.
        by: String,
    },
    /// Serve a new configuration policy (and new `from_env` values, by secret name).
    Reload {
        /// The configuration's policy.
        policy: PolicyFile,
        /// Values of `from_env` secrets from the caller's environment.
        values: std::collections::BTreeMap<String, String>,
    },
    /// Watch questions (and hold them while watching).
    Watch,
    /// Answer a question.
    Answer {
        /// The question.
        id: u64,
        /// Once, or a rule (`allow`/`deny` of the host and port asked for).
        kind: ChangeKind,
        /// Who answers, for the audit log.
        by: String,
    },
    /// The policy in force, its routes, the open questions.
    Status,
}

/// What one change did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeResult {
    /// The pattern, normalized.
    pub pattern: String,
    /// Rules of the other list it undid (`"x" (hutch.toml:4)`).
    pub undone: Vec<String>,
    /// The configuration rule that already said so, if any.
    pub already: Option<String>,
    /// A deny rule that still refuses the pattern's host after an allow.
    pub still_denied: Option<String>,
    /// Waiting requests it answered (`host:port`).
    pub answered: Vec<String>,
    /// Open connections it cut.
    pub cut: usize,
    /// The route it opened, for a `tcp://` rule (`… in the guest: …`).
    pub route: Option<String>,
}

/// A reply of the network process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The changes are in force.
    Changed {
        /// One per change.
        results: Vec<ChangeResult>,
    },
    /// The new configuration is in force.
    Reloaded,
    /// Watching; the questions already open.
    Watching {
        /// Open questions.
        pending: Vec<Question>,
    },
    /// A question was answered (or was no longer open).
    Answered {
        /// How it ended, or why it could not be answered.
        outcome: String,
    },
    /// What is in force.
    Status {
        /// The policy.
        policy: PolicyFile,
        /// The `tcp://` routes.
        routes: Vec<Route>,
        /// Open questions.
        pending: Vec<Question>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Why the control socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No network process listens (the VM is stopped, or has no network).
    #[error("no network process is running for this VM ({})", socket.display())]
    NotRunning {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed midway.
    #[error("talking to the VM's network process: {0}")]
    Io(#[from] std::io::Error),
    /// The network process answered something unexpected, or too late.
    #[error("the VM's network process answered unexpectedly: {0}")]
    Protocol(String),
    /// The network process refused the request.
    #[error("{0}")]
    Refused(String),
}

/// One request, one reply.
pub async fn call(net_dir: &Path, request: &Request) -> Result<Reply, ControlError> {
    let (mut reader, mut writer) = connect(net_dir).await?;
    send(&mut writer, request).await?;
    let line = tokio::time::timeout(REPLY_WAIT, read_line(&mut reader))
        .await
        .map_err(|_| ControlError::Protocol(format!("no reply within {} s", REPLY_WAIT.as_secs())))??;
    let line = line.ok_or_else(|| ControlError::Protocol("it closed the connection".into()))?;
    match serde_json::from_str(&line).map_err(|e| ControlError::Protocol(e.to_string()))? {
        Reply::Error { message } => Err(ControlError::Refused(message)),
        reply => Ok(reply),
    }
}

/// [`call`] for callers without a runtime (`hutch up`'s lifecycle code).
pub fn call_blocking(net_dir: &Path, request: &Request) -> Result<Reply, ControlError> {
    use std::io::{BufRead, Write};
    let socket = socket(net_dir);
    let stream = std::os::unix::net::UnixStream::connect(&socket).map_err(|source| ControlError::NotRunning { socket, source })?;
    stream.set_read_timeout(Some(REPLY_WAIT))?;
    let mut line = serde_json::to_vec(request).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut reply = Vec::new();
    std::io::Read::take(std::io::BufReader::new(&stream), MAX_LINE as u64).read_until(b'\n', &mut reply)?;
    match serde_json::from_slice(&reply).map_err(|e| ControlError::Protocol(e.to_string()))? {
        Reply::Error { message } => Err(ControlError::Refused(message)),
        reply => Ok(reply),
    }
}

async fn connect(net_dir: &Path) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf), ControlError> {
    let socket = socket(net_dir);
    let stream = UnixStream::connect(&socket).await.map_err(|source| ControlError::NotRunning { socket, source })?;
    let (reader, writer) = stream.into_split();
    Ok((BufReader::new(reader), writer))
}

async fn send<T: Serialize>(writer: &mut OwnedWriteHalf, message: &T) -> Result<(), ControlError> {
    let mut line = serde_json::to_vec(message).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    Ok(())
}

/// The next line, at most [`MAX_LINE`] bytes; `None` at the end.
async fn read_line(reader: &mut BufReader<OwnedReadHalf>) -> Result<Option<String>, ControlError> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() { None } else { Some(String::from_utf8_lossy(&line).into_owned()) });
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if line.len() > MAX_LINE {
            return Err(ControlError::Protocol(format!("a line longer than {MAX_LINE} bytes")));
        }
        if done {
            line.pop();
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

/// A watcher's connection: questions come in, answers go out.
pub struct Watcher {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Watcher {
    /// Starts watching; also the questions open now.
    pub async fn connect(net_dir: &Path) -> Result<(Watcher, Vec<Question>), ControlError> {
        let (mut reader, mut writer) = connect(net_dir).await?;
        send(&mut writer, &Request::Watch).await?;
        let line = read_line(&mut reader).await?.ok_or_else(|| ControlError::Protocol("it closed the connection".into()))?;
        match serde_json::from_str(&line).map_err(|e| ControlError::Protocol(e.to_string()))? {
            Reply::Watching { pending } => Ok((Watcher { reader, writer }, pending)),
            Reply::Error { message } => Err(ControlError::Refused(message)),
            other => Err(ControlError::Protocol(format!("{other:?}"))),
        }
    }

    /// The next question or settlement; `None` when the process is gone.
    pub async fn next(&mut self) -> Result<Option<AskEvent>, ControlError> {
        loop {
            let Some(line) = read_line(&mut self.reader).await? else { return Ok(None) };
            // Replies to our answers come on the same connection: not events.
            if let Ok(event) = serde_json::from_str::<AskEvent>(&line) {
                return Ok(Some(event));
            }
        }
    }

    /// Answers question `id`.
    pub async fn answer(&mut self, id: u64, kind: ChangeKind, by: &str) -> Result<(), ControlError> {
        send(&mut self.writer, &Request::Answer { id, kind, by: by.to_owned() }).await
    }
}

/// Serves the control socket until the process ends.
pub async fn serve(listener: tokio::net::UnixListener, ctx: Arc<Context>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, ctx.clone()));
            }
            Err(e) => {
                tracing::warn!("accepting a control connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, ctx: Arc<Context>) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let request = match read_line(&mut reader).await {
        Ok(Some(line)) => serde_json::from_str::<Request>(&line).map_err(|e| format!("not a request: {e}")),
        Ok(None) => return,
        Err(e) => Err(e.to_string()),
    };
    let reply = match request {
        Ok(Request::Watch) => return watch(reader, writer, &ctx).await,
        Ok(request) => handle(&ctx, request),
        Err(message) => Reply::Error { message },
    };
    let _ = send(&mut writer, &reply).await;
}

/// One request that is not `watch`.
fn handle(ctx: &Context, request: Request) -> Reply {
    let result = match request {
        Request::Change { changes, by } => {
            changes.iter().map(|c| change(ctx, c, &by)).collect::<Result<Vec<_>, _>>().map(|results| Reply::Changed { results })
        }
        Request::Reload { policy, values } => reload(ctx, policy, &values).map(|()| Reply::Reloaded),
        Request::Answer { id, kind, by } => Ok(Reply::Answered { outcome: answer(ctx, id, kind, &by) }),
        Request::Status => Ok(Reply::Status {
            policy: (*ctx.served.file()).clone(),
            routes: ctx.served.routes().borrow().clone(),
            pending: ctx.asks.pending(),
        }),
        Request::Watch => Err("watch needs a connection of its own".into()),
    };
    result.unwrap_or_else(|message| Reply::Error { message })
}

/// Applies one change, answers what it decides, cuts what it refuses, logs it.
fn change(ctx: &Context, change: &Change, by: &str) -> Result<ChangeResult, String> {
    let pattern: HostPattern = change.pattern.parse()?;
    let text = pattern.to_string();
    let mut result = ChangeResult { pattern: text.clone(), ..ChangeResult::default() };
    let rule = Rule { pattern: text.clone(), source: change.source.clone() };
    let action = match change.kind {
        // Not a change of the policy: the egress lines say who let what through.
        ChangeKind::Once => {
            let once = Answer::Once { by: by.to_owned() };
            let answered = ctx.asks.answer_where(|q| pattern.matches(&q.host, q.port).then(|| once.clone()));
            result.answered = answered.iter().map(|q| format!("{}:{}", q.host, q.port)).collect();
            return Ok(result);
        }
        ChangeKind::Allow | ChangeKind::Deny => {
            let edit = ctx
                .served
                .edit(|base, edits| if change.kind == ChangeKind::Allow { edits.allow(base, rule) } else { edits.deny(base, rule) })
                .map_err(|e| e.to_string())?;
            result.undone = edit.undone.iter().map(shown).collect();
            result.already = edit.already.as_ref().map(shown);
            let (answered, cut) = enforce(ctx);
            result.answered = answered;
            result.cut = cut;
            let policy = ctx.served.policy();
            if change.kind == ChangeKind::Allow {
                result.still_denied = still_denied(&policy, &pattern);
                result.route = ctx.served.routes().borrow().iter().find(|r| r.rule == text).map(Route::describe);
            }
            if change.kind == ChangeKind::Allow { "allow" } else { "deny" }
        }
    };
    ctx.log_event(What::Policy(PolicyChange {
        action: action.into(),
        pattern: text,
        by: by.to_owned(),
        saved: change.saved.clone(),
        undone: result.undone.clone(),
        answered: result.answered.len() as u64,
        cut: result.cut as u64,
    }));
    Ok(result)
}

/// After a policy change: open questions it decides are answered, open
/// connections it refuses are cut.
fn enforce(ctx: &Context) -> (Vec<String>, usize) {
    let policy = ctx.served.policy();
    let answered = ctx.asks.settle(&policy).iter().map(|q| format!("{}:{}", q.host, q.port)).collect();
    let cut = ctx.active.cut(|host, port| match policy.decide(host, port) {
        Verdict::Deny { reason } => Some(format!("{reason}, cut while open")),
        Verdict::Allow { .. } | Verdict::Ask => None,
    });
    (answered, cut)
}

/// A deny rule that still refuses the one host an allowed pattern names.
fn still_denied(policy: &Policy, pattern: &HostPattern) -> Option<String> {
    let host = match &pattern.host {
        crate::config::pattern::HostMatch::Exact(name) => name.clone(),
        crate::config::pattern::HostMatch::Net(ip, _) if pattern.is_explicit() => ip.to_string(),
        _ => return None,
    };
    let port = match pattern.port {
        crate::config::pattern::PortMatch::One(port) => port,
        _ => 443,
    };
    match policy.decide(&host, port) {
        Verdict::Deny { reason } => Some(reason),
        _ => None,
    }
}

fn shown(rule: &Rule) -> String {
    format!("{:?} ({})", rule.pattern, rule.source)
}

/// Answers question `id` as a person did; how it ended.
fn answer(ctx: &Context, id: u64, kind: ChangeKind, by: &str) -> String {
    let Some(question) = ctx.asks.pending().into_iter().find(|q| q.id == id) else {
        return "it was no longer waiting".into();
    };
    if kind == ChangeKind::Once {
        return match ctx.asks.answer(id, &Answer::Once { by: by.to_owned() }) {
            Some(_) => "allowed once".into(),
            None => "it was no longer waiting".into(),
        };
    }
    let pattern = Policy::suggestion(&question.host, question.port);
    let rule = Change { kind, pattern, source: by.to_owned(), saved: None };
    match change(ctx, &rule, by) {
        Ok(result) if kind == ChangeKind::Allow => format!("allowed: {:?} added for as long as the VM runs", result.pattern),
        Ok(result) => format!("denied: {:?} added for as long as the VM runs", result.pattern),
        Err(e) => e,
    }
}

/// Serves a new configuration policy, and new `from_env` values.
fn reload(ctx: &Context, policy: PolicyFile, values: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    let old = ctx.secrets();
    let secrets = super::secrets::Secrets::load(&ctx.net_dir, &policy, |var| {
        let name = policy.secrets.iter().find(|(_, s)| s.from_env.as_deref() == Some(var)).map(|(n, _)| n.as_str());
        // An unset variable in the caller's environment keeps the value the process has.
        name.and_then(|n| values.get(n).cloned().or_else(|| old.env_value(n).map(str::to_owned)))
    })
    .map_err(|e| e.to_string())?;
    let timeout = Duration::from_millis(policy.ask_timeout_ms);
    ctx.served.rebase(policy).map_err(|e| e.to_string())?;
    ctx.set_secrets(secrets);
    ctx.asks.set_timeout(timeout);
    let (answered, cut) = enforce(ctx);
    ctx.log_event(What::Policy(PolicyChange {
        action: "reload".into(),
        by: "hutch up".into(),
        answered: answered.len() as u64,
        cut: cut as u64,
        ..PolicyChange::default()
    }));
    Ok(())
}

/// Keeps the connection as a watcher's until it closes.
async fn watch(mut reader: BufReader<OwnedReadHalf>, mut writer: OwnedWriteHalf, ctx: &Context) {
    let (_watching, mut events, pending) = ctx.asks.watch();
    if send(&mut writer, &Reply::Watching { pending }).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    if send(&mut writer, &event).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            line = read_line(&mut reader) => match line {
                Ok(Some(line)) => {
                    let reply = match serde_json::from_str::<Request>(&line) {
                        Ok(request @ Request::Answer { .. }) => handle(ctx, request),
                        Ok(_) => Reply::Error { message: "a watcher may only answer".into() },
                        Err(e) => Reply::Error { message: format!("not a request: {e}") },
                    };
                    if send(&mut writer, &reply).await.is_err() {
                        return;
                    }
                }
                Ok(None) | Err(_) => return,
            },
        }
    }
}
