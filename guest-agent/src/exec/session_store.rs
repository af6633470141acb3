//! The agent's sessions, by name: what `hutch ps` lists and `attach`,
//! `logs`, `wait` and `kill` find.
//!
//! Limits (agent flags, see [`Limits`]): each session's output buffer
//! (default 4 MiB, at most `--session-buffer-max`), the buffers of all kept
//! sessions together (`--session-memory`), and the number of sessions kept,
//! finished ones included (`--max-sessions`). A finished session keeps its
//! exit status and buffer for an hour, or for a minute once its end has been
//! reported (to `wait`, `ps`, `logs` read to the end, or an attached
//! client); a new session that would pass a limit first makes room by
//! dropping finished ones, the oldest first, and is refused only when the
//! running ones alone fill it.
//!
//! Sessions end with the agent: it kills their process groups when it stops,
//! and its journal (see `journal`) lets the next agent kill whatever a
//! crashed one left behind and list those sessions as lost, with the reason.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{AttachMode, Attached, ExecResponse, SessionInfo, SessionOptions, SessionState, StartError, StartFailed, Started};
use nix::sys::signal::Signal;
use tonic::Status;

use super::attach::{self, Attaching, Until};
use super::input::{Requests, parse_signal};
use super::journal::Journal;
use super::kept::{self, Kept, Launch, Role};
use super::output::Responses;
use super::registry::Groups;
use super::spawn::{Spawned, Spec, spawn};
use crate::limits;
use crate::untrusted::shown_str;

/// The agent's limits on sessions.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Buffer size when a session asks for none.
    pub default_buffer: usize,
    /// Largest buffer one session may have.
    pub max_buffer: usize,
    /// Buffer capacity of all kept sessions together.
    pub memory: u64,
    /// Sessions kept at once (running, finished, lost).
    pub max_sessions: usize,
    /// How long a finished session is kept.
    pub keep_finished: Duration,
    /// How long it is kept once its end has been reported.
    pub keep_reported: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_buffer: limits::SESSION_BUFFER,
            max_buffer: usize::try_from(limits::SESSION_BUFFER_MAX).unwrap_or(usize::MAX),
            memory: limits::SESSION_MEMORY,
            max_sessions: limits::MAX_SESSIONS,
            keep_finished: limits::SESSION_KEEP,
            keep_reported: limits::SESSION_KEEP_REPORTED,
        }
    }
}

/// Smallest buffer a session gets, whatever it asks for.
const MIN_BUFFER: usize = limits::SESSION_BUFFER_MIN;

/// How often finished sessions past their time are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The sessions of one agent; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    limits: Limits,
    groups: Groups,
    journal: Option<Journal>,
    started: SystemTime,
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    /// In the order they started.
    entries: Vec<Entry>,
    /// Next number for generated names.
    counter: u64,
    sweeper: bool,
}

/// One session the agent knows.
enum Entry {
    /// Started by this agent.
    Kept(Arc<Kept>),
    /// Ended with a previous agent; what its journal said.
    Lost { info: Box<SessionInfo>, noted: Instant, reported: Option<Instant> },
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Kept(kept) => &kept.name,
            Entry::Lost { info, .. } => &info.name,
        }
    }

    /// Buffer capacity it holds on to.
    fn buffer(&self) -> u64 {
        match self {
            Entry::Kept(kept) => kept.buffer() as u64,
            Entry::Lost { .. } => 0,
        }
    }

    /// When it may be dropped, if it has ended.
    fn expires(&self, limits: &Limits) -> Option<Instant> {
        let (ended, reported) = match self {
            Entry::Kept(kept) => {
                let end = kept.end()?;
                (end.since, end.reported)
            }
            Entry::Lost { noted, reported, .. } => (*noted, *reported),
        };
        let by_age = ended + limits.keep_finished;
        Some(reported.map_or(by_age, |r| by_age.min(r + limits.keep_reported)))
    }

    fn info(&self) -> SessionInfo {
        match self {
            Entry::Kept(kept) => kept.info(),
            Entry::Lost { info, .. } => (**info).clone(),
        }
    }

    fn mark_reported(&mut self) {
        match self {
            Entry::Kept(kept) => kept.mark_reported(),
            Entry::Lost { reported, .. } => {
                reported.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Why a session could not be found or used.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No session has that name (shown as untrusted text).
    #[error("no session named \"{0}\" (`hutch ps` lists them)")]
    NotFound(String),
    /// It has ended (its name, shown as untrusted text).
    #[error("session \"{0}\" has ended")]
    Ended(String),
    /// The signal name is unknown (shown as untrusted text).
    #[error("unknown signal \"{0}\"")]
    BadSignal(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
}

impl From<SessionError> for Status {
    fn from(e: SessionError) -> Status {
        match e {
            SessionError::NotFound(_) => Status::not_found(e.to_string()),
            SessionError::Ended(_) => Status::failed_precondition(e.to_string()),
            SessionError::BadSignal(_) | SessionError::Invalid(_) => Status::invalid_argument(e.to_string()),
        }
    }
}

impl Sessions {
    /// An empty set of sessions, plus those `journal` says ended with a
    /// previous agent (`lost`); running sessions register their process
    /// groups in `groups`.
    pub fn new(limits: Limits, groups: Groups, journal: Option<Journal>, lost: Vec<SessionInfo>) -> Sessions {
        let now = Instant::now();
        let entries = lost.into_iter().map(|info| Entry::Lost { info: Box::new(info), noted: now, reported: None }).collect();
        let store = Store { entries, counter: 0, sweeper: false };
        Sessions { inner: Arc::new(Inner { limits, groups, journal, started: SystemTime::now(), store: Mutex::new(store) }) }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.inner.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `spec` as a session and serves the stream that asked for it:
    /// `started`, then `detached` at once, or output as the first writer.
    pub async fn start(
        &self,
        spec: Spec,
        timeout: Option<Duration>,
        options: SessionOptions,
        inbound: impl Requests,
        responses: Responses,
    ) {
        let buffer = self.buffer_for(options.buffer_bytes);
        let name = match self.make_room_for(&options.name, &spec.argv, buffer) {
            Ok(name) => name,
            Err((error, message)) => {
                let failed = StartFailed { error: error as i32, message };
                let _ = responses.send(Ok(ExecResponse { kind: Some(Kind::StartFailed(failed)) })).await;
                return;
            }
        };
        let Spawned { child, pid, io } = match spawn(&spec) {
            Ok(spawned) => spawned,
            Err(failure) => return super::finish::send_failure(&responses, failure).await,
        };
        let registration = self.inner.groups.register(pid);
        let launch = Launch { name: name.clone(), argv: spec.argv, buffer, timeout };
        let sessions = self.clone();
        let kept = kept::launch(launch, child, pid, io, registration, move |kept| sessions.ended(kept));
        tracing::debug!(pid, session = %shown_str(&name), "session started");
        self.store().entries.push(Entry::Kept(kept.clone()));
        self.write_journal();
        self.ensure_sweeper();

        let started = ExecResponse { kind: Some(Kind::Started(Started { pid: pid as u32, session: name })) };
        if options.detach {
            if responses.send(Ok(started)).await.is_ok() {
                let detached =
                    hutch_proto::v1::Detached { reason: hutch_proto::v1::DetachReason::DetachAtStart as i32, session: kept.name.clone() };
                let _ = responses.send(Ok(ExecResponse { kind: Some(Kind::Detached(detached)) })).await;
            }
            return;
        }
        let (client, cursor) = kept.join(Role::Writer, false);
        attach::serve(kept, client, cursor, Until::End, started, inbound, responses).await;
    }

    /// Attaches a client (`hutch attach`, `hutch logs`) and serves it.
    pub fn attach(&self, start: &hutch_proto::v1::AttachStart) -> Result<Attaching, SessionError> {
        let kept = self.find_kept(&start.session)?;
        let mode = AttachMode::try_from(start.mode).unwrap_or(AttachMode::AttachWriter);
        let (client, cursor, until, mode) = match mode {
            AttachMode::AttachLogs => {
                let (client, cursor, end) = kept.join_logs();
                (client, cursor, if start.follow { Until::End } else { Until::Offset(end) }, AttachMode::AttachLogs)
            }
            AttachMode::AttachViewer => {
                let (client, cursor) = kept.join(Role::Viewer, false);
                (client, cursor, Until::End, AttachMode::AttachViewer)
            }
            AttachMode::AttachWriter | AttachMode::Unspecified => {
                let (client, cursor) = kept.join(Role::Writer, start.force);
                let mode = if client.role == Role::Writer { AttachMode::AttachWriter } else { AttachMode::AttachViewer };
                (client, cursor, Until::End, mode)
            }
        };
        if mode != AttachMode::AttachLogs && kept.end().is_none() {
            // A writer's size, or just a nudge: either way the program redraws.
            let size = if client.role == Role::Writer { start.size } else { None };
            kept.redraw(size);
        }
        let attached =
            Attached { session: kept.name.clone(), pid: kept.pid as u32, mode: mode as i32, tty: kept.tty, took_over: client.took_over };
        let first = ExecResponse { kind: Some(Kind::Attached(attached)) };
        Ok(Attaching { kept, client, cursor, until, first })
    }

    /// Every session, in the order they started. Ended ones count as reported.
    pub fn list(&self) -> (Vec<SessionInfo>, u64) {
        self.prune();
        let mut store = self.store();
        let infos = store
            .entries
            .iter_mut()
            .map(|entry| {
                let info = entry.info();
                if info.state != SessionState::SessionRunning as i32 {
                    entry.mark_reported();
                }
                info
            })
            .collect();
        (infos, kept::unix_ms(self.inner.started))
    }

    /// Waits until session `name` has ended; describes how.
    pub async fn wait(&self, name: &str) -> Result<SessionInfo, SessionError> {
        let kept = match self.find(name)? {
            Found::Kept(kept) => kept,
            Found::Lost(info) => return Ok(*info),
        };
        let mut news = kept.news();
        while kept.end().is_none() {
            if news.changed().await.is_err() {
                break;
            }
        }
        kept.mark_reported();
        Ok(kept.info())
    }

    /// Sends the signal named `signal` to session `name`'s process group.
    pub fn signal(&self, name: &str, signal: &str) -> Result<SessionInfo, SessionError> {
        let sig = parse_signal(signal).ok_or_else(|| SessionError::BadSignal(shown_str(signal)))?;
        self.signal_with(name, sig)
    }

    /// Sends `sig` to session `name`'s process group.
    pub fn signal_with(&self, name: &str, sig: Signal) -> Result<SessionInfo, SessionError> {
        let kept = match self.find(name)? {
            Found::Kept(kept) => kept,
            Found::Lost(_) => return Err(SessionError::Ended(shown_str(name))),
        };
        kept.signal(sig).map_err(|_| SessionError::Ended(shown_str(name)))?;
        Ok(kept.info())
    }

    fn find(&self, name: &str) -> Result<Found, SessionError> {
        self.prune();
        let store = self.store();
        match store.entries.iter().find(|e| e.name() == name) {
            Some(Entry::Kept(kept)) => Ok(Found::Kept(kept.clone())),
            Some(Entry::Lost { info, .. }) => Ok(Found::Lost(info.clone())),
            None => Err(SessionError::NotFound(shown_str(name))),
        }
    }

    fn find_kept(&self, name: &str) -> Result<Arc<Kept>, SessionError> {
        match self.find(name)? {
            Found::Kept(kept) => Ok(kept),
            Found::Lost(info) => Err(SessionError::Invalid(format!(
                "session {:?} ended with a previous agent ({}): its output is gone",
                info.name, info.lost_reason
            ))),
        }
    }

    fn buffer_for(&self, asked: u64) -> usize {
        let limits = &self.inner.limits;
        match asked {
            0 => limits.default_buffer,
            n => usize::try_from(n).unwrap_or(usize::MAX).clamp(MIN_BUFFER, limits.max_buffer.max(MIN_BUFFER)),
        }
    }

    /// Checks `asked` (or picks a name) and the limits for a new session of
    /// `buffer` bytes, dropping finished sessions to make room when needed.
    fn make_room_for(&self, asked: &str, argv: &[String], buffer: usize) -> Result<String, (StartError, String)> {
        self.prune();
        let limits = &self.inner.limits;
        let mut store = self.store();
        let name = if asked.is_empty() {
            generate_name(&mut store, argv)
        } else {
            check_name(asked).map_err(|why| (StartError::InvalidRequest, why))?;
            match store.entries.iter().position(|e| e.name() == asked) {
                Some(i) if matches!(&store.entries[i], Entry::Kept(k) if k.end().is_none()) => {
                    return Err((
                        StartError::NameInUse,
                        format!("a running session is already named {asked:?}; pick another --tag, or end it first (`hutch kill {asked}`)"),
                    ));
                }
                Some(i) => {
                    store.entries.remove(i);
                }
                None => {}
            }
            asked.to_owned()
        };
        loop {
            let count = store.entries.len();
            let memory: u64 = store.entries.iter().map(Entry::buffer).sum();
            if count < limits.max_sessions && memory + buffer as u64 <= limits.memory {
                return Ok(name);
            }
            // Make room: the finished session that ended first goes.
            let Some(oldest) = store.entries.iter().position(|e| e.expires(limits).is_some()) else {
                let running = store.entries.len();
                return Err((
                    StartError::SessionLimit,
                    format!(
                        "the agent keeps {running} sessions with {} MiB of output buffers, its limit (sessions: {}, memory: {} MiB); end some, or ask for a smaller buffer",
                        memory >> 20,
                        limits.max_sessions,
                        limits.memory >> 20
                    ),
                ));
            };
            store.entries.remove(oldest);
        }
    }

    /// Drops finished sessions past their time.
    fn prune(&self) {
        let limits = &self.inner.limits;
        let now = Instant::now();
        self.store().entries.retain(|e| e.expires(limits).is_none_or(|at| at > now));
    }

    /// Runs when a session's process has ended.
    fn ended(&self, kept: &Kept) {
        tracing::debug!(pid = kept.pid, session = %shown_str(&kept.name), "session ended");
        self.write_journal();
    }

    /// Records the running sessions for the next agent (taking over the
    /// journal lists what a crashed holder left as lost).
    fn write_journal(&self) {
        let Some(journal) = &self.inner.journal else { return };
        let lost = journal.record_with(|| {
            self.store()
                .entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Kept(kept) if kept.end().is_none() => Some(journal.entry(kept.info())),
                    _ => None,
                })
                .collect()
        });
        let now = Instant::now();
        self.store().entries.extend(lost.into_iter().map(|info| Entry::Lost { info: Box::new(info), noted: now, reported: None }));
    }

    /// Starts the task that drops finished sessions past their time, once.
    fn ensure_sweeper(&self) {
        let mut store = self.store();
        if store.sweeper {
            return;
        }
        store.sweeper = true;
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                Sessions { inner }.prune();
            }
        });
    }
}

enum Found {
    Kept(Arc<Kept>),
    Lost(Box<SessionInfo>),
}

/// Longest session name.
pub const MAX_NAME: usize = 64;

/// Whether `name` may name a session: 1 to 64 of `[A-Za-z0-9._-]`, not
/// starting with '-' or '.' (so it never reads as a flag or a hidden file).
pub fn check_name(name: &str) -> Result<(), String> {
    let valid_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name.is_empty() || name.len() > MAX_NAME || !valid_chars || name.starts_with(['-', '.']) {
        return Err(format!(
            "\"{}\" is not a valid session name: use 1 to {MAX_NAME} letters, digits, '.', '_' or '-', not starting with '-' or '.'",
            shown_str(name)
        ));
    }
    Ok(())
}

/// "<program>-<n>" with the first n that is free.
fn generate_name(store: &mut Store, argv: &[String]) -> String {
    let program = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("session");
    let mut base: String = program.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(MAX_NAME - 8).collect();
    base = base.trim_start_matches(['-', '.']).to_owned();
    if base.is_empty() {
        base = "session".into();
    }
    loop {
        store.counter += 1;
        let name = format!("{base}-{}", store.counter);
        if !store.entries.iter().any(|e| e.name() == name) {
            return name;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_short() {
        assert!(check_name("build").is_ok());
        assert!(check_name("claude-2.run_1").is_ok());
        for bad in ["", "-rf", ".hidden", "a b", "a/b", "ü", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_names_come_from_the_program_and_skip_taken_ones() {
        let mut store = Store::default();
        assert_eq!(generate_name(&mut store, &["/usr/bin/make".into()]), "make-1");
        assert_eq!(generate_name(&mut store, &["--weird name!".into()]), "weirdname-2");
        assert_eq!(generate_name(&mut store, &["...".into()]), "session-3");
        let info = SessionInfo { name: "make-4".into(), ..Default::default() };
        store.entries.push(Entry::Lost { info: Box::new(info), noted: Instant::now(), reported: None });
        assert_eq!(generate_name(&mut store, &["make".into()]), "make-5");
    }
}
