//! The loop of a synced workspace: one agent connection, the host's watch,
//! pushes out, the guest's Watch stream in, and flush requests from other
//! hutch commands on a control socket (`control.sock` in the sync's state
//! folder: `hutch sync` sends `flush` and gets one JSON line back once both
//! directions are through).
//!
//! A host change goes out once the project has been quiet for the settle
//! time (at most ten settle times after the first change); a guest change
//! is applied as its batch arrives. Every message the agent sends is
//! checked against what it may be (one file's data at a time, no more than
//! its size, an ack only for the batch just sent); anything else ends the
//! session with a protocol error.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hutch_proto::v1::sync_request::Kind as Out;
use hutch_proto::v1::sync_response::Kind as SyncIn;
use hutch_proto::v1::watch_request::Kind as WatchOut;
use hutch_proto::v1::watch_response::Kind as WatchIn;
use hutch_proto::v1::{PathList, SyncFinish, SyncRequest, SyncStart, WatchAck, WatchFlush, WatchRequest, WatchStart};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::events::Event;
use super::{Engine, LiveError, Pending};
use crate::sync::beneath::shown;
use crate::sync::{Source, SyncError, send};
use crate::transport::Client;

/// How long the host project must be quiet before a push.
pub const SETTLE: Duration = Duration::from_millis(15);
/// A push goes out at the latest this many settle times after the first change.
const SETTLE_CAP: u32 = 10;
/// How often the base is written back while it changes.
const SAVE_EVERY: Duration = Duration::from_secs(2);
/// How long a path a push skipped waits before it is pushed again.
const SKIPPED_RETRY: Duration = Duration::from_millis(100);
/// Paths per `delete` message of a push.
const DELETE_CHUNK: usize = 4096;
/// The control socket's file in the sync's state folder.
pub const CONTROL_SOCKET: &str = "control.sock";

/// What a flush did, as `hutch sync` prints it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Flushed {
    /// Host entries pushed to the guest (sent or deleted).
    pub pushed: usize,
    /// Guest changes received.
    pub received: usize,
    /// The agent's time for its part of the flush, in microseconds.
    pub guest_us: u64,
    /// Events (refusals, conflicts, notices) recorded so far by this sync.
    pub events: usize,
}

/// Counts of the current flush.
#[derive(Default)]
struct Counts {
    pushed: usize,
    received: usize,
    /// The agent's time for the last flush it answered, in microseconds.
    guest_us: u64,
}

/// Runs the synced workspace against `client` until `stop` resolves (then
/// `Ok(true)`) or the agent connection ends (`Ok(false)`: reconnect).
pub async fn session(
    client: &mut Client,
    engine: &mut Engine,
    control: &mut mpsc::Receiver<oneshot::Sender<Flushed>>,
    stop: &mut (impl std::future::Future<Output = ()> + Unpin),
    progress: bool,
    ready: &mut dyn FnMut(),
) -> Result<bool, LiveError> {
    if engine.has_base() {
        engine.compare_everything();
    } else {
        let source = Source { root: engine.root().to_path_buf(), rules: engine.rules().clone() };
        let report = crate::sync::sync(client, &source, progress).await?;
        eprintln!("hutch: sync: {}: {}", source.root.display(), report.line());
        engine.copied(report.tree);
        engine.save_base();
    }
    let (watch_tx, watch_rx) = mpsc::channel(8);
    let start = WatchStart {
        root: root_text(engine.root())?,
        rules: Some(engine.rules().clone()),
        max_file_bytes: engine.max_file(),
        settle_ms: u32::try_from(SETTLE.as_millis()).unwrap_or(15),
    };
    let _ = watch_tx.send(WatchRequest { kind: Some(WatchOut::Start(start)) }).await;
    let mut stream = client.watch(ReceiverStream::new(watch_rx)).await.map_err(SyncError::from_status)?.into_inner();
    match stream.message().await.map_err(SyncError::from_status)?.and_then(|m| m.kind) {
        Some(WatchIn::Ready(ready)) => {
            eprintln!(
                "hutch: sync: {} in step both ways (guest: {}, {} entries)",
                engine.root().display(),
                shown(ready.method.as_bytes()),
                ready.entries
            );
        }
        other => return Err(LiveError::Protocol(format!("expected `ready`, got {}", name(other.as_ref())))),
    }
    let host_events = register(engine.watched().dup_fd())?;
    ready();
    let mut pending = Pending::Done;
    let mut flushes: Vec<(u64, oneshot::Sender<Flushed>)> = Vec::new();
    let mut next_flush = 0u64;
    let mut counts = Counts::default();
    let mut first: Option<Instant> = engine.host_dirty().then(Instant::now);
    let mut last = Instant::now();
    let mut saved = Instant::now();
    loop {
        let polling = engine.watched().fd().is_none();
        let due_at = match first {
            Some(first) => (last + SETTLE).min(first + SETTLE * SETTLE_CAP),
            None => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            message = stream.message() => {
                let Some(message) = message.map_err(SyncError::from_status)? else { return Ok(false) };
                let batch_end = handle(engine, &mut pending, message.kind, &mut counts, &mut flushes)?;
                if let Some(batch) = batch_end {
                    let _ = watch_tx.send(WatchRequest { kind: Some(WatchOut::Ack(WatchAck { batch })) }).await;
                    // Conflict copies and folders the host kept go back at once.
                    if engine.host_dirty() {
                        first.get_or_insert(Instant::now());
                    }
                }
            }
            ready = async { match &host_events { Some(fd) if !polling => fd.readable().await.map(Some), _ => std::future::pending().await } } => {
                if let Ok(Some(mut guard)) = ready {
                    guard.clear_ready();
                    if engine.watched().take_events() {
                        last = Instant::now();
                        first.get_or_insert(last);
                    }
                }
            }
            () = tokio::time::sleep(hutch_proto::watch::POLL_EVERY), if polling => {
                last = Instant::now();
                first.get_or_insert(last);
            }
            () = tokio::time::sleep_until(due_at.into()), if first.is_some() => {}
            // A push the guest skipped because its report of the same path
            // had not been acknowledged yet (a report the host has already
            // applied): no report will come for it, so the path is pushed
            // again a moment later rather than left until the next flush.
            () = tokio::time::sleep(SKIPPED_RETRY), if engine.awaiting_guest() && first.is_none() => {
                engine.retry_skipped();
                first = Some(Instant::now());
            }
            request = control.recv() => {
                let Some(reply) = request else { continue };
                // What the host has now goes first, then the guest reports.
                engine.watched().take_events();
                engine.retry_skipped();
                counts.pushed += push(client, engine).await?;
                first = None;
                next_flush += 1;
                let flush = WatchRequest { kind: Some(WatchOut::Flush(WatchFlush { id: next_flush })) };
                let _ = watch_tx.send(flush).await;
                flushes.push((next_flush, reply));
            }
            () = &mut *stop => {
                engine.save_base();
                return Ok(true);
            }
        }
        if first.is_some_and(|_| Instant::now() >= due_at) {
            first = None;
            counts.pushed += push(client, engine).await?;
        }
        // A flush the guest answered: push what its changes made the host
        // send back (conflicts), then reply.
        if flushes.iter().any(|(id, _)| *id == 0) {
            counts.pushed += push(client, engine).await?;
            let done = std::mem::take(&mut counts);
            for (_, reply) in flushes.extract_if(.., |(id, _)| *id == 0) {
                let _ = reply.send(Flushed {
                    pushed: done.pushed,
                    received: done.received,
                    guest_us: done.guest_us,
                    events: engine.events().recorded,
                });
            }
        }
        if saved.elapsed() >= SAVE_EVERY {
            engine.save_base();
            saved = Instant::now();
        }
    }
}

/// Handles one message of the Watch stream; returns the batch to ack at a
/// batch's end.
fn handle(
    engine: &mut Engine,
    pending: &mut Pending,
    kind: Option<WatchIn>,
    counts: &mut Counts,
    flushes: &mut [(u64, oneshot::Sender<Flushed>)],
) -> Result<Option<u64>, LiveError> {
    let busy = !matches!(pending, Pending::Done);
    match kind {
        Some(WatchIn::Change(change)) if !busy => {
            counts.received += 1;
            *pending = engine.guest_change(&change.path, change.synced.as_ref(), change.current, change.too_large);
        }
        Some(WatchIn::Data(data)) => match std::mem::replace(pending, Pending::Done) {
            Pending::Write(mut incoming) => {
                if data.len() as u64 > incoming.left {
                    return Err(LiveError::Protocol("more file data than the file's size".into()));
                }
                if let Err(e) = incoming.write(&data) {
                    engine.events().record(Event::refused(&[], format!("writing a file from the guest: {e}")));
                    *pending = Pending::Discard { left: incoming.left };
                } else if incoming.left == 0 {
                    engine.finish_file(*incoming);
                } else {
                    *pending = Pending::Write(incoming);
                }
            }
            Pending::Discard { left } => {
                let left =
                    left.checked_sub(data.len() as u64).ok_or_else(|| LiveError::Protocol("more file data than the file's size".into()))?;
                if left > 0 {
                    *pending = Pending::Discard { left };
                }
            }
            Pending::Done => return Err(LiveError::Protocol("file data with no file".into())),
        },
        Some(WatchIn::BatchEnd(end)) if !busy => return Ok(Some(end.batch)),
        Some(WatchIn::Flushed(flushed)) if !busy => {
            counts.guest_us = flushed.guest_us;
            if let Some(slot) = flushes.iter_mut().find(|(id, _)| *id == flushed.id) {
                // Marked done (id 0): answered once the loop has pushed.
                slot.0 = 0;
            }
        }
        Some(WatchIn::Notice(notice)) => engine.events().record(Event::notice(format!("guest: {}", shown(notice.text.as_bytes())))),
        other => {
            return Err(LiveError::Protocol(format!(
                "unexpected {} {}",
                name(other.as_ref()),
                if busy { "inside a file's data" } else { "" }
            )));
        }
    }
    Ok(None)
}

/// Pushes what the host changed; returns how many entries went out.
async fn push(client: &mut Client, engine: &mut Engine) -> Result<usize, LiveError> {
    let (sends, deletes) = engine.host_changes();
    if sends.is_empty() && deletes.is_empty() {
        return Ok(0);
    }
    let count = sends.len() + deletes.len();
    let (tx, rx) = mpsc::channel(8);
    let start = SyncStart { root: root_text(engine.root())?, rules: Some(engine.rules().clone()), push: true };
    let _ = tx.send(SyncRequest { kind: Some(Out::Start(start)) }).await;
    let mut responses = client.sync(ReceiverStream::new(rx)).await.map_err(SyncError::from_status)?.into_inner();
    match responses.message().await.map_err(SyncError::from_status)?.and_then(|m| m.kind) {
        Some(SyncIn::ManifestEnd(_)) => {}
        _ => return Err(LiveError::Protocol("a push's answer must start with `manifest_end`".into())),
    }
    let root = engine.root().to_path_buf();
    let sender = tokio::spawn(async move {
        for chunk in deletes.chunks(DELETE_CHUNK) {
            if tx.send(SyncRequest { kind: Some(Out::Delete(PathList { paths: chunk.to_vec() })) }).await.is_err() {
                return Ok((Vec::new(), deletes));
            }
        }
        let mut sent = Vec::new();
        if !sends.is_empty() {
            let total = sends.iter().map(|e| e.size).sum();
            let archive_tx = tx.clone();
            let archive_root = root.clone();
            sent = tokio::task::spawn_blocking(move || send::archive(&archive_root, &sends, total, archive_tx, false))
                .await
                .map_err(|e| SyncError::Internal(format!("the archiver failed: {e}")))?
                .map_err(|e| SyncError::Local { what: format!("archiving {}", root.display()), source: e })?
                .entries;
        }
        let _ = tx.send(SyncRequest { kind: Some(Out::Finish(SyncFinish { root: None })) }).await;
        Ok::<_, SyncError>((sent, deletes))
    });
    let summary = match responses.message().await.map_err(SyncError::from_status)?.and_then(|m| m.kind) {
        Some(SyncIn::Summary(summary)) => summary,
        _ => return Err(LiveError::Protocol("a push must end with its summary".into())),
    };
    let (sent, deleted) = sender.await.map_err(|e| SyncError::Internal(format!("the sender failed: {e}")))??;
    engine.pushed(sent, deleted, summary.skipped, summary.skipped_more);
    Ok(count)
}

/// Serves the control socket at `path`: each connection's `flush` line is
/// passed to the loop, and its answer written back as one JSON line.
pub fn serve_control(path: &Path) -> Result<mpsc::Receiver<oneshot::Sender<Flushed>>, LiveError> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|source| LiveError::Local { what: format!("binding {}", path.display()), source })?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_err() || line.trim() != "flush" {
                    return;
                }
                let (reply, answer) = oneshot::channel();
                if tx.send(reply).await.is_err() {
                    return;
                }
                if let Ok(flushed) = answer.await
                    && let Ok(mut text) = serde_json::to_string(&flushed)
                {
                    text.push('\n');
                    let _ = write.write_all(text.as_bytes()).await;
                }
            });
        }
    });
    Ok(rx)
}

/// Asks the synced workspace whose state folder is `state_dir` to flush
/// both ways; its answer. `None` when none runs there.
pub async fn flush(state_dir: &Path, timeout: Duration) -> Option<Flushed> {
    let mut stream = UnixStream::connect(state_dir.join(CONTROL_SOCKET)).await.ok()?;
    stream.write_all(b"flush\n").await.ok()?;
    let mut line = String::new();
    tokio::time::timeout(timeout, BufReader::new(stream).read_line(&mut line)).await.ok()?.ok()?;
    serde_json::from_str(line.trim()).ok()
}

/// How long an exec waits for a flush of its synced workspace.
const EXEC_FLUSH: Duration = Duration::from_secs(30);

/// [`flush`] for `hutch exec`: a sync process that does not answer is
/// named on stderr, and the command runs all the same.
pub async fn flush_or_warn(state_dir: &Path) {
    if flush(state_dir, EXEC_FLUSH).await.is_none() {
        eprintln!(
            "hutch: the synced workspace does not answer (see {}): edits may not have reached the other side; `hutch up` starts it again",
            state_dir.join("sync.log").display()
        );
    }
}

/// Where the state of a synced workspace reached by address lives.
pub fn addr_state_dir(state_root: &Path, addr: &str, root: &Path) -> PathBuf {
    let key = format!("{addr}\0{}", root.display());
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    state_root.join("sync").join(format!("{hash:016x}"))
}

fn register(fd: Option<OwnedFd>) -> Result<Option<AsyncFd<OwnedFd>>, LiveError> {
    let Some(fd) = fd else { return Ok(None) };
    // SAFETY: `OwnedFd` owns a valid descriptor (a duplicate of the inotify
    // one, non-blocking), neither closed nor replaced while the `AsyncFd` owns it.
    let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
    registered.map(Some).map_err(|e| LiveError::Local { what: "watching the project".into(), source: e.into() })
}

fn root_text(root: &Path) -> Result<String, LiveError> {
    root.to_str().map(str::to_owned).ok_or_else(|| LiveError::Protocol(format!("{} is not UTF-8", root.display())))
}

fn name(kind: Option<&WatchIn>) -> &'static str {
    match kind {
        Some(WatchIn::Ready(_)) => "ready",
        Some(WatchIn::Change(_)) => "change",
        Some(WatchIn::Data(_)) => "data",
        Some(WatchIn::BatchEnd(_)) => "batch_end",
        Some(WatchIn::Flushed(_)) => "flushed",
        Some(WatchIn::Notice(_)) => "notice",
        None => "an empty message",
    }
}
