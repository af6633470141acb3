//! One session: a process the agent keeps for whichever clients come and go,
//! instead of for the one stream that started it (`hutch exec --detach`,
//! `--keep`, Tart's `detach`).
//!
//! The process is owned by a task of its own ([`launch`]), so no stream's
//! end can end it. Its output goes into a bounded [`Ring`] that clients read
//! with their own cursors (see `attach`):
//!
//! - Nobody holds the writer's seat: the output pumps never wait. The ring
//!   keeps the newest bytes and counts what it lets go; the process runs at
//!   full speed and the agent's memory stays at the ring's capacity.
//! - A writer is attached: it must see every byte, so the pumps read only
//!   while the ring has room beyond what the writer has not read yet. A slow
//!   writer slows the process down, exactly as a plain exec's client does.
//! - Viewers never slow anything down: one that falls further behind than
//!   the ring holds skips ahead and is told how much it missed.
//!
//! The end works as for a plain exec (see `stream` and `finish`): a
//! timeout sends SIGTERM then SIGKILL, and output is drained for up to
//! `DRAIN_GRACE` after the main process exits, then cut.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hutch_proto::v1::{Exited, OutputDropped, SessionInfo, SessionState, TerminalSize};
use nix::libc;
use nix::pty::Winsize;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use super::fd::{AsyncPipe, read_slice};
use super::finish::{drain, exited_message};
use super::input::{self, StdinMsg, StdinTarget};
use super::output::{Channel, PumpEnd};
use super::pty;
use super::registry::Registration;
use super::ring::{Cursor, Read, Ring};
use super::spawn::ChildIo;
use super::timeout::Timeout;

/// Stdin chunks that may wait for a session's process.
const STDIN_QUEUE: usize = 8;

/// After a cut, read at most this many more chunks already in the pipe.
const MAX_READS_AFTER_CUT: usize = 16;

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);

/// A session: its process, its output buffer, and who is attached.
pub struct Kept {
    /// Its name, unique among the agent's sessions.
    pub name: String,
    /// The main process's pid, also its process group's id.
    pub pid: i32,
    /// What it runs.
    pub argv: Vec<String>,
    /// Whether it runs on a PTY.
    pub tty: bool,
    /// When it started.
    pub started: SystemTime,
    master: Option<Arc<AsyncPipe>>,
    stdin: Mutex<Option<mpsc::Sender<StdinMsg>>>,
    state: Mutex<State>,
    /// Bumped whenever clients have something new to look at: output, the
    /// end, a change of seats.
    news: watch::Sender<u64>,
    /// Bumped when the writer has read on, or left: the pumps may read again.
    room: watch::Sender<u64>,
}

/// What clients share, behind one lock.
struct State {
    ring: Ring,
    writer: Option<Seat>,
    viewers: u32,
    /// Where the next writer starts: the last writer's position, so it gets
    /// what was printed while nobody was attached.
    unseen: Cursor,
    end: Option<(Exited, SystemTime, Instant)>,
    /// When the end was first reported to anyone (`wait`, `ps`, an attached
    /// client): the store then keeps the session only a little longer.
    reported: Option<Instant>,
    next_client: u64,
}

/// The writer's seat.
struct Seat {
    client: u64,
    cursor: Cursor,
    kick: Arc<Notify>,
}

/// What a client may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds the writer's seat: stdin, resizes, signals, and every byte of output.
    Writer,
    /// Watches: output only.
    Viewer,
}

/// One attached client, as the session knows it.
pub struct Client {
    /// Its number in this session.
    pub id: u64,
    /// What it got.
    pub role: Role,
    /// Notified when another client takes the writer's seat (writers only).
    pub kicked: Option<Arc<Notify>>,
    /// Whether it took the seat from another client.
    pub took_over: bool,
}

/// What a client should do next.
pub enum Step {
    /// Send these bytes, then move to the cursor.
    Data(Channel, Bytes, Cursor),
    /// Say that this much is gone, then move to the cursor.
    Dropped([u64; 2], Cursor),
    /// Everything was sent and the session has ended like this.
    Ended(Exited),
    /// Nothing to do until the news changes.
    Idle,
}

/// How a session was asked to start, beyond what the process needs.
pub struct Launch {
    /// Its name.
    pub name: String,
    /// What it runs.
    pub argv: Vec<String>,
    /// Output buffer capacity.
    pub buffer: usize,
    /// Kill the group after this long.
    pub timeout: Option<Duration>,
}

/// When a session ended, for the store's timers.
pub struct End {
    /// When it ended.
    pub since: Instant,
    /// When the end was first reported to anyone.
    pub reported: Option<Instant>,
}

impl Kept {
    /// Subscribes to news (output, the end, seat changes).
    pub fn news(&self) -> watch::Receiver<u64> {
        self.news.subscribe()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump_news(&self) {
        self.news.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn bump_room(&self) {
        self.room.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Joins as `wanted`, taking the writer's seat from its holder when
    /// `force` is set; a writer's seat that is taken makes a viewer.
    pub fn join(&self, wanted: Role, force: bool) -> (Client, Cursor) {
        let mut state = self.state();
        let id = state.next_client;
        state.next_client += 1;
        let mut took_over = false;
        let role = match (wanted, &state.writer) {
            (Role::Writer, None) => Role::Writer,
            (Role::Writer, Some(seat)) if force => {
                seat.kick.notify_one();
                took_over = true;
                Role::Writer
            }
            _ => Role::Viewer,
        };
        let cursor = state.unseen;
        let kicked = match role {
            Role::Writer => {
                let kick = Arc::new(Notify::new());
                state.writer = Some(Seat { client: id, cursor, kick: kick.clone() });
                Some(kick)
            }
            Role::Viewer => {
                state.viewers += 1;
                None
            }
        };
        drop(state);
        self.bump_room();
        (Client { id, role, kicked, took_over }, cursor)
    }

    /// Joins as a reader of the whole buffer (`hutch logs`): a cursor at the
    /// session's first byte, and the offset the buffer ends at now.
    pub fn join_logs(&self) -> (Client, Cursor, u64) {
        let mut state = self.state();
        let id = state.next_client;
        state.next_client += 1;
        state.viewers += 1;
        let end = state.ring.end();
        // From the very first byte: what the buffer let go of is reported first.
        (Client { id, role: Role::Viewer, kicked: None, took_over: false }, Cursor::default(), end)
    }

    /// Leaves (the seat is freed if `client` still holds it).
    pub fn leave(&self, client: &Client) {
        let mut state = self.state();
        match client.role {
            Role::Writer if state.writer.as_ref().is_some_and(|s| s.client == client.id) => state.writer = None,
            Role::Writer => {}
            Role::Viewer => state.viewers = state.viewers.saturating_sub(1),
        }
        drop(state);
        self.bump_room();
        self.bump_news();
    }

    /// Whether `client` holds the writer's seat now.
    pub fn is_writer(&self, client: &Client) -> bool {
        client.role == Role::Writer && self.state().writer.as_ref().is_some_and(|s| s.client == client.id)
    }

    /// What `client` at `cursor` should do next (at most `max` bytes).
    pub fn next(&self, cursor: Cursor, max: usize) -> Step {
        let state = self.state();
        let mut next = cursor;
        match state.ring.read(&mut next, max) {
            Read::Data(channel, data) => Step::Data(channel, data, next),
            Read::Dropped(lost) => Step::Dropped(lost, next),
            Read::Empty => match &state.end {
                Some((exited, _, _)) => Step::Ended(exited.clone()),
                None => Step::Idle,
            },
        }
    }

    /// `client` has passed everything before `cursor` on.
    pub fn advance(&self, client: &Client, cursor: Cursor) {
        if client.role != Role::Writer {
            return;
        }
        let mut state = self.state();
        let Some(seat) = state.writer.as_mut().filter(|s| s.client == client.id) else { return };
        seat.cursor = cursor;
        state.unseen = cursor;
        drop(state);
        self.bump_room();
    }

    /// Notes that the end was reported to someone.
    pub fn mark_reported(&self) {
        let mut state = self.state();
        if state.end.is_some() && state.reported.is_none() {
            state.reported = Some(Instant::now());
        }
    }

    /// The end, if the session has ended.
    pub fn end(&self) -> Option<End> {
        let state = self.state();
        state.end.as_ref().map(|(_, _, since)| End { since: *since, reported: state.reported })
    }

    /// The buffer's capacity.
    pub fn buffer(&self) -> usize {
        self.state().ring.capacity()
    }

    /// The session as `ListSessions` shows it.
    pub fn info(&self) -> SessionInfo {
        let state = self.state();
        let dropped = state.ring.dropped();
        let (state_value, exited, ended) = match &state.end {
            Some((exited, at, _)) => (SessionState::SessionExited, Some(exited.clone()), unix_ms(*at)),
            None => (SessionState::SessionRunning, None, 0),
        };
        SessionInfo {
            name: self.name.clone(),
            pid: self.pid as u32,
            argv: self.argv.clone(),
            started_unix_ms: unix_ms(self.started),
            state: state_value as i32,
            exited,
            attached: state.writer.is_some(),
            viewers: state.viewers,
            tty: self.tty,
            buffer_bytes: state.ring.capacity() as u64,
            buffered_bytes: state.ring.held(),
            dropped: Some(OutputDropped { stdout_bytes: dropped[0], stderr_bytes: dropped[1] }),
            ended_unix_ms: ended,
            lost_reason: String::new(),
        }
    }

    /// Writes `data` to the session's stdin (dropped when it has none, or
    /// after it was closed); waits while the process is slow to read.
    pub async fn write_stdin(&self, data: Bytes) {
        let tx = self.stdin.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(tx) = tx
            && tx.send(StdinMsg::Data(data)).await.is_err()
        {
            // The process closed its stdin: later bytes have nowhere to go.
            *self.stdin.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Closes the session's stdin for good (the terminal's EOF on a PTY).
    pub async fn close_stdin(&self) {
        let tx = self.stdin.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(tx) = tx {
            let _ = tx.send(StdinMsg::Close).await;
        }
    }

    /// Resizes the terminal (PTY sessions), as a writer's `resize` asks.
    pub fn resize(&self, size: TerminalSize) {
        let Some(master) = &self.master else { return };
        if let Err(e) = pty::resize(master.as_fd(), input::clamp(size.rows), input::clamp(size.cols)) {
            tracing::debug!(pid = self.pid, "resize failed: {e}");
        }
    }

    /// Resizes the terminal (PTY sessions) to a newly attached client's
    /// `size`, if given, and makes its program redraw, even when the size
    /// does not change.
    pub fn redraw(&self, size: Option<TerminalSize>) {
        let Some(master) = &self.master else { return };
        let fd = master.as_fd();
        let before = current_size(fd);
        if let Some(size) = size.filter(|s| s.rows > 0 && s.cols > 0) {
            let (rows, cols) = (input::clamp(size.rows), input::clamp(size.cols));
            if let Err(e) = pty::resize(fd, rows, cols) {
                tracing::debug!(pid = self.pid, "resize failed: {e}");
            }
            if before != Some((rows, cols)) {
                return; // the kernel signalled the change itself
            }
        }
        // Same size: the kernel sends nothing, so ask for a redraw directly.
        if let Ok(group) = nix::unistd::tcgetpgrp(fd) {
            let _ = killpg(group, Signal::SIGWINCH);
        }
    }

    /// Sends `signal` to the session's process group.
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        if self.end().is_some() {
            return Err(nix::errno::Errno::ESRCH);
        }
        killpg(Pid::from_raw(self.pid), signal)
    }

    /// Room in the buffer for the pumps now.
    fn write_output(&self, channel: Channel, read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>) -> Option<std::io::Result<usize>> {
        let mut state = self.state();
        let keep = state.writer.as_ref().map(|s| s.cursor.offset);
        let room = state.ring.room(keep).min(super::output::OUTPUT_CHUNK);
        if room == 0 {
            return None;
        }
        let result = state.ring.write_with(channel, room, read);
        drop(state);
        if matches!(result, Ok(n) if n > 0) {
            self.bump_news();
        }
        Some(result)
    }

    fn finish(&self, exited: Exited) {
        self.state().end = Some((exited, SystemTime::now(), Instant::now()));
        *self.stdin.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.bump_news();
    }
}

/// An output stream of the process, and which one it is.
type Source = (Arc<AsyncPipe>, Channel);

/// Starts the task that owns the session's process; returns the session.
/// `on_end` runs once the process has ended and its output is in.
pub fn launch(
    launch: Launch,
    child: Child,
    pid: i32,
    io: ChildIo,
    registration: Registration,
    on_end: impl FnOnce(&Kept) + Send + 'static,
) -> Arc<Kept> {
    let (stdin_target, master, sources): (Option<StdinTarget>, Option<Arc<AsyncPipe>>, Vec<Source>) = match io {
        ChildIo::Pipes { stdin, stdout, stderr } => {
            (stdin.map(StdinTarget::Pipe), None, vec![(Arc::new(stdout), Channel::Stdout), (Arc::new(stderr), Channel::Stderr)])
        }
        ChildIo::Pty { master } => (Some(StdinTarget::Pty(master.clone())), Some(master.clone()), vec![(master, Channel::Stdout)]),
    };
    let stdin = stdin_target.map(|target| {
        let (tx, rx) = mpsc::channel(STDIN_QUEUE);
        tokio::spawn(input::write_stdin(target, rx));
        tx
    });
    let kept = Arc::new(Kept {
        name: launch.name,
        pid,
        argv: launch.argv,
        tty: master.is_some(),
        started: SystemTime::now(),
        master,
        stdin: Mutex::new(stdin),
        state: Mutex::new(State {
            ring: Ring::new(launch.buffer),
            writer: None,
            viewers: 0,
            unseen: Cursor::default(),
            end: None,
            reported: None,
            next_client: 0,
        }),
        news: watch::Sender::new(0),
        room: watch::Sender::new(0),
    });
    tokio::spawn(run(kept.clone(), child, sources, launch.timeout, registration, on_end));
    kept
}

/// Owns the process until it has ended and its output is in the buffer.
async fn run(
    kept: Arc<Kept>,
    mut child: Child,
    sources: Vec<Source>,
    timeout: Option<Duration>,
    registration: Registration,
    on_end: impl FnOnce(&Kept),
) {
    let started_at = tokio::time::Instant::now();
    let (cut_tx, cut_rx) = watch::channel(false);
    let mut pumps = JoinSet::new();
    for (source, channel) in sources {
        pumps.spawn(pump(kept.clone(), source, channel, cut_rx.clone()));
    }
    let pid = kept.pid;
    let mut limit = Timeout::new(started_at, timeout);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = limit.step(pid) => {}
        }
    };
    let duration = started_at.elapsed();
    let timed_out = limit.timed_out();
    if timed_out {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    drop(registration);
    let drained = drain(&mut pumps, &cut_tx).await;
    let exited = match status {
        Ok(status) => exited_message(status, timed_out, duration, drained.cut),
        Err(e) => {
            tracing::warn!(pid, "waiting for a session's process failed: {e}");
            Exited { status: Some(hutch_proto::v1::exited::Status::Code(255)), ..Default::default() }
        }
    };
    tracing::debug!(pid, ?exited, "session ended");
    kept.finish(exited);
    on_end(&kept);
}

/// Copies `source` into the session's buffer until EOF or a cut.
async fn pump(kept: Arc<Kept>, source: Arc<AsyncPipe>, channel: Channel, mut cut: watch::Receiver<bool>) -> PumpEnd {
    let mut room = kept.room.subscribe();
    loop {
        if *cut.borrow() {
            return drain_after_cut(&kept, &source, channel, &mut room).await;
        }
        room.borrow_and_update();
        let mut full = false;
        let read = tokio::select! {
            biased;
            read = source.read_with(|fd| match kept.write_output(channel, |slice| read_slice(fd, slice)) {
                Some(result) => result,
                None => {
                    full = true;
                    Ok(1)
                }
            }) => read,
            _ = cut.changed() => continue,
        };
        if full {
            // The writer has not read what is there: wait until it does (or leaves).
            tokio::select! {
                _ = room.changed() => {}
                _ = cut.changed() => {}
            }
            continue;
        }
        match read {
            Ok(0) => return PumpEnd::Eof,
            Ok(_) => {}
            Err(e) => return PumpEnd::Failed(e),
        }
    }
}

/// After the grace: takes what is already in the pipe (everything the main
/// process wrote), then stops. Like a plain exec's pump, it waits for an
/// attached writer to make room rather than cut what the process wrote.
async fn drain_after_cut(kept: &Kept, source: &AsyncPipe, channel: Channel, room: &mut watch::Receiver<u64>) -> PumpEnd {
    let mut reads = 0;
    while reads < MAX_READS_AFTER_CUT {
        room.borrow_and_update();
        let mut full = false;
        let read = source.try_read_with(|fd| match kept.write_output(channel, |slice| read_slice(fd, slice)) {
            Some(result) => result,
            None => {
                full = true;
                Ok(1)
            }
        });
        if full {
            if room.changed().await.is_err() {
                break;
            }
            continue;
        }
        reads += 1;
        match read {
            Ok(Some(0)) => return PumpEnd::Eof,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return PumpEnd::Failed(e),
        }
    }
    PumpEnd::Cut
}

/// The terminal's size now, as (rows, cols).
fn current_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut size = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` to the valid pointer.
    unsafe { get_winsize(fd.as_raw_fd(), &mut size) }.ok()?;
    Some((size.ws_row, size.ws_col))
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
