//! The `Watch` call: the guest's half of a synced workspace.
//!
//! The copy a Sync made is watched ([`hutch_proto::watch`]: inotify on Linux
//! guests, a walk every second elsewhere). What the guest changes is
//! reported to the host in batches: the copy must be quiet for the settle
//! time (or the first change be ten settle times old) before a batch goes
//! out, and the next one waits for the host's `ack`. A path is reported when
//! what the copy holds differs from what both sides last agreed on
//! ([`super::agreed`]), which it then becomes; so the copy's own pushes
//! (which record what they wrote) are never reported back, and a change
//! made while the host was away is reported when the call starts, by
//! comparing the copy with the state file the last Sync left.
//!
//! Finding and comparing run under the root's lock, so they never see a
//! push half applied; reading and sending the files' contents do not (the
//! host waits for a batch before it pushes again). A file is read as it is
//! when it is sent, and described as what was read (size, mtime, mode from
//! the opened file); if it changes again meanwhile, the watch reports it
//! once more. The agreed state goes back to the state file every few
//! seconds and when the call ends, so a new agent knows what was reported.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hutch_proto::tree::{SNAPSHOT_MODE_BITS, same_or_absent};
use hutch_proto::v1::watch_request::Kind as In;
use hutch_proto::v1::watch_response::Kind as Out;
use hutch_proto::v1::{
    ChangedEntry, EntryKind, ManifestEntry, SnapshotState, WalkRules, WatchBatchEnd, WatchFlushed, WatchNotice, WatchReady, WatchRequest,
    WatchResponse,
};
use hutch_proto::watch::{Method, Watched};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::agreed::{self, Agreed, Entries};
use super::root::SnapshotRoot;
use super::session::blocking;
use super::validate::{self, SafeRoot};
use super::{Config, SyncError, state};

/// Largest file reported with its contents unless the host says otherwise.
const DEFAULT_MAX_FILE: u64 = 256 << 20;
/// How long the copy must be quiet before a batch goes out, by default.
const DEFAULT_SETTLE: Duration = Duration::from_millis(15);
/// Longest settle time a host may ask for.
const MAX_SETTLE: Duration = Duration::from_secs(10);
/// A batch goes out at the latest this many settle times after its first change.
const SETTLE_CAP: u32 = 10;
/// Bytes of file contents per `data` message.
const DATA_CHUNK: usize = 1 << 20;
/// How often the agreed state is written back while it changes.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Serves one Watch call; errors end the call with their status.
pub async fn run(config: Arc<Config>, requests: Streaming<WatchRequest>, tx: mpsc::Sender<Result<WatchResponse, Status>>) {
    if let Err(e) = serve(config, requests, &tx).await {
        tracing::warn!("watch failed: {e}");
        let _ = tx.send(Err(e.status())).await;
    }
    crate::malloc::trim();
}

/// One watched copy, as the call keeps it.
struct Copy {
    root: String,
    rules: WalkRules,
    watched: Arc<Mutex<Watched>>,
    agreed: Arc<Mutex<Agreed>>,
    /// The copy's folder, for reading files beneath it.
    fd: OwnedFd,
    max_file: u64,
    /// Paths to compare at the next batch besides what the watch reports.
    pending: BTreeSet<Vec<u8>>,
}

async fn serve(
    config: Arc<Config>,
    mut requests: Streaming<WatchRequest>,
    tx: &mpsc::Sender<Result<WatchResponse, Status>>,
) -> Result<(), SyncError> {
    let start = match next(&mut requests).await? {
        Some(In::Start(start)) => start,
        _ => return Err(SyncError::BadRequest("the first Watch message must be `start`".into())),
    };
    let rules = start.rules.clone().unwrap_or_default();
    let settle = if start.settle_ms == 0 { DEFAULT_SETTLE } else { Duration::from_millis(u64::from(start.settle_ms)).min(MAX_SETTLE) };
    let max_file = if start.max_file_bytes == 0 { DEFAULT_MAX_FILE } else { start.max_file_bytes };

    // Arm the watch and compare with the last agreed state under the root's
    // lock: no push runs meanwhile.
    let lock = config.locks.lock(&start.root).await;
    let (setup_config, root_name, setup_rules) = (config.clone(), start.root.clone(), rules.clone());
    let (opened, entries, watched) = blocking(move || {
        let saved = state::load(&setup_config.state_dir, &root_name)
            .map_err(SyncError::io("reading the snapshot state"))?
            .ok_or_else(|| SyncError::NeverSynced(crate::untrusted::shown_str(&root_name)))?;
        let opened = SnapshotRoot::open(&setup_config, &root_name, false)?;
        let watched = Watched::start(&opened.walk_path(), &setup_rules, setup_config.watch_method)?;
        let entries: Entries = saved.entries.into_iter().map(|e| (e.path.clone(), e)).collect();
        Ok((opened, entries, watched))
    })
    .await?;
    let pending: BTreeSet<Vec<u8>> = watched
        .manifest()
        .iter()
        .filter(|(path, now)| !same_or_absent(Some(now), entries.get(*path)))
        .map(|(path, _)| path.clone())
        .chain(entries.keys().filter(|path| !watched.manifest().contains_key(*path)).cloned())
        .collect();
    let ready = WatchReady { method: watched.method().as_str().to_owned(), entries: watched.manifest().len() as u64 };
    let fd = opened.try_clone_fd().map_err(SyncError::io("opening the copy"))?;
    let (ticket, agreed) = config.agreed.register(&start.root, entries);
    drop(lock);

    let mut copy = Copy { root: start.root.clone(), rules, watched: Arc::new(Mutex::new(watched)), agreed, fd, max_file, pending };
    send(tx, Out::Ready(ready)).await?;
    let result = watch(&config, &mut copy, ticket, settle, &mut requests, tx).await;
    config.agreed.unregister(&copy.root, ticket);
    save(&config, &copy).await;
    // The root must stay open while the watch uses its path.
    drop(opened);
    result
}

/// The call's loop: batches out, acks and flushes in, until the host leaves.
async fn watch(
    config: &Arc<Config>,
    copy: &mut Copy,
    ticket: u64,
    settle: Duration,
    requests: &mut Streaming<WatchRequest>,
    tx: &mpsc::Sender<Result<WatchResponse, Status>>,
) -> Result<(), SyncError> {
    let events = match lock(&copy.watched).dup_fd() {
        // SAFETY: `OwnedFd` owns a valid descriptor (a duplicate of the
        // inotify one, non-blocking), neither closed nor replaced while the
        // `AsyncFd` owns it.
        Some(fd) => Some(
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| SyncError::io("watching the copy")(e.into()))?,
        ),
        None => None,
    };
    let mut batch = 0u64;
    let mut in_flight = None;
    let mut flushes = Vec::new();
    // When the first change not yet reported, and the last one, were seen.
    let mut first: Option<Instant> = (!copy.pending.is_empty()).then(Instant::now);
    let mut last = Instant::now();
    let mut saved = Instant::now();
    loop {
        let polling = lock(&copy.watched).method() == Method::Poll;
        let dirty = first.is_some() || !copy.pending.is_empty();
        let due_at = match first {
            Some(first) => (last + settle).min(first + settle * SETTLE_CAP),
            None => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            ready = async { match &events { Some(fd) if !polling => fd.readable().await.map(Some), _ => std::future::pending().await } } => {
                if let Ok(Some(mut guard)) = ready {
                    guard.clear_ready();
                    if lock(&copy.watched).take_events() {
                        last = Instant::now();
                        first.get_or_insert(last);
                    }
                }
            }
            () = tokio::time::sleep(hutch_proto::watch::POLL_EVERY), if polling => {
                last = Instant::now();
                first.get_or_insert(last);
            }
            message = next(requests) => match message? {
                Some(In::Ack(ack)) if in_flight == Some(ack.batch) => in_flight = None,
                Some(In::Ack(ack)) => return Err(SyncError::BadRequest(format!("an ack of batch {} while batch {in_flight:?} is outstanding", ack.batch))),
                Some(In::Flush(flush)) => flushes.push(flush.id),
                Some(In::Start(_)) => return Err(SyncError::BadRequest("a second `start`".into())),
                None => return Ok(()),
            },
            () = tokio::time::sleep_until(due_at.into()), if dirty => {}
        }
        if !config.agreed.is_current(&copy.root, ticket) {
            return Err(SyncError::Changed("another Watch call took over this copy".into()));
        }
        let due = first.is_some_and(|_| Instant::now() >= due_at) || !flushes.is_empty();
        if in_flight.is_some() || !due {
            continue;
        }
        let lock_held = config.locks.lock(&copy.root).await;
        let (watched, agreed) = (copy.watched.clone(), copy.agreed.clone());
        let pending = std::mem::take(&mut copy.pending);
        let began = Instant::now();
        let (reports, notices) = blocking(move || Ok(compare(&watched, &agreed, pending))).await?;
        drop(lock_held);
        first = None;
        let found_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        for text in notices {
            send(tx, Out::Notice(WatchNotice { text })).await?;
        }
        if !reports.is_empty() {
            batch += 1;
            let reader = Reader {
                fd: copy.fd.try_clone().map_err(SyncError::io("reading the copy"))?,
                max_file: copy.max_file,
                agreed: copy.agreed.clone(),
            };
            let sender = tx.clone();
            let read_us = blocking(move || reader.send(reports, &sender)).await?;
            let guest_us = found_us.saturating_add(read_us);
            send(tx, Out::BatchEnd(WatchBatchEnd { batch, guest_us })).await?;
            in_flight = Some(batch);
        }
        for id in flushes.drain(..) {
            send(tx, Out::Flushed(WatchFlushed { id, guest_us: found_us })).await?;
        }
        if saved.elapsed() >= SAVE_EVERY {
            save(config, copy).await;
            saved = Instant::now();
        }
    }
}

/// One path to report: what was agreed, what it is now.
struct Report {
    path: Vec<u8>,
    synced: Option<ManifestEntry>,
    current: Option<ManifestEntry>,
}

/// Brings the watch up to date and compares what changed (and `pending`)
/// with the agreed state, which becomes what the copy holds. Deletions come
/// first, deepest first; then the rest, folders before what is inside them.
fn compare(watched: &Mutex<Watched>, agreed: &Mutex<Agreed>, mut pending: BTreeSet<Vec<u8>>) -> (Vec<Report>, Vec<String>) {
    let mut watched = lock(watched);
    pending.extend(watched.refresh().into_iter().map(|c| c.path));
    let notices = watched.take_notices();
    let mut agreed = agreed::lock(agreed);
    let mut reports: Vec<Report> = Vec::new();
    for path in pending {
        let now = watched.manifest().get(&path);
        if same_or_absent(now, agreed.entries.get(&path)) {
            continue;
        }
        let synced = match now {
            Some(entry) => agreed.entries.insert(path.clone(), entry.clone()),
            None => agreed.entries.remove(&path),
        };
        agreed.unsaved = true;
        reports.push(Report { path, synced, current: now.cloned() });
    }
    reports.sort_by(|a, b| match (&a.current, &b.current) {
        (None, None) => b.path.cmp(&a.path),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(_), Some(_)) => a.path.cmp(&b.path),
    });
    (reports, notices)
}

/// Reads reported files beneath the copy and sends them.
struct Reader {
    fd: OwnedFd,
    max_file: u64,
    agreed: Arc<Mutex<Agreed>>,
}

impl Reader {
    /// Sends every report (with contents); returns the microseconds spent reading.
    fn send(self, reports: Vec<Report>, tx: &mpsc::Sender<Result<WatchResponse, Status>>) -> Result<u64, SyncError> {
        let mut root = SafeRoot::new(self.fd.try_clone().map_err(SyncError::io("reading the copy"))?);
        let mut reading = Duration::ZERO;
        for report in reports {
            let is_file = report.current.as_ref().is_some_and(|c| c.kind == EntryKind::EntryFile as i32);
            if !is_file {
                let change = ChangedEntry { path: report.path, synced: report.synced, current: report.current, too_large: false };
                blocking_send(tx, Out::Change(change))?;
                continue;
            }
            let began = Instant::now();
            let opened = open_file(&mut root, &report.path);
            reading += began.elapsed();
            let Some((file, current)) = opened else {
                // Gone or no longer a file since it was found: the watch
                // reports what it became; until then it counts as deleted.
                let path = report.path.clone();
                agreed::lock(&self.agreed).entries.remove(&path);
                blocking_send(tx, Out::Change(ChangedEntry { path, synced: report.synced, current: None, too_large: false }))?;
                continue;
            };
            agreed::lock(&self.agreed).entries.insert(report.path.clone(), current.clone());
            let too_large = current.size > self.max_file;
            let size = current.size;
            blocking_send(tx, Out::Change(ChangedEntry { path: report.path, synced: report.synced, current: Some(current), too_large }))?;
            if !too_large {
                reading += send_contents(file, size, tx)?;
            }
        }
        Ok(u64::try_from(reading.as_micros()).unwrap_or(u64::MAX))
    }
}

/// Opens a reported file beneath the copy (no symlink followed, never
/// blocking on a FIFO swapped in) and describes it as opened.
fn open_file(root: &mut SafeRoot, path: &[u8]) -> Option<(std::fs::File, ManifestEntry)> {
    let parts = validate::components(path).ok()?;
    let parent = root.parent(&parts, false).ok()?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(parent, parts[parts.len() - 1], flags, Mode::empty()).ok()?;
    let st = fstat(&fd).ok()?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return None;
    }
    let entry = ManifestEntry {
        path: path.to_vec(),
        kind: EntryKind::EntryFile as i32,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime_ns: st.st_mtime.saturating_mul(1_000_000_000).saturating_add(st.st_mtime_nsec),
        #[allow(clippy::useless_conversion)]
        mode: u32::from(st.st_mode) & SNAPSHOT_MODE_BITS,
        link_target: Vec::new(),
    };
    Some((std::fs::File::from(fd), entry))
}

/// Sends exactly `size` bytes of `file` (zeros if it shrank meanwhile: its
/// new mtime makes the watch report it again); returns the time spent reading.
fn send_contents(file: std::fs::File, size: u64, tx: &mpsc::Sender<Result<WatchResponse, Status>>) -> Result<Duration, SyncError> {
    let mut data = file.take(size).chain(std::io::repeat(0)).take(size);
    let mut left = size;
    let mut reading = Duration::ZERO;
    while left > 0 {
        let mut chunk = vec![0; usize::try_from(left).unwrap_or(DATA_CHUNK).min(DATA_CHUNK)];
        let began = Instant::now();
        data.read_exact(&mut chunk).map_err(SyncError::io("reading a changed file"))?;
        reading += began.elapsed();
        left -= chunk.len() as u64;
        blocking_send(tx, Out::Data(chunk))?;
    }
    Ok(reading)
}

/// Writes the agreed state back to the state file, if it changed.
async fn save(config: &Arc<Config>, copy: &Copy) {
    let entries: Vec<ManifestEntry> = {
        let mut agreed = agreed::lock(&copy.agreed);
        if !agreed.unsaved {
            return;
        }
        agreed.unsaved = false;
        agreed.entries.values().cloned().collect()
    };
    let state = SnapshotState { root: copy.root.clone(), rules: Some(copy.rules.clone()), entries };
    let dir = config.state_dir.clone();
    let saved = blocking(move || state::save(&dir, &state).map_err(SyncError::io("saving the copy's state"))).await;
    if let Err(e) = saved {
        tracing::warn!("{e}");
    }
}

fn lock(watched: &Mutex<Watched>) -> std::sync::MutexGuard<'_, Watched> {
    watched.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn next(requests: &mut Streaming<WatchRequest>) -> Result<Option<In>, SyncError> {
    match requests.message().await {
        Ok(Some(message)) => Ok(message.kind),
        Ok(None) => Ok(None),
        Err(status) => Err(SyncError::Request(crate::untrusted::request_error(&status))),
    }
}

async fn send(tx: &mpsc::Sender<Result<WatchResponse, Status>>, kind: Out) -> Result<(), SyncError> {
    tx.send(Ok(WatchResponse { kind: Some(kind) })).await.map_err(|_| SyncError::BadRequest("the host went away".into()))
}

fn blocking_send(tx: &mpsc::Sender<Result<WatchResponse, Status>>, kind: Out) -> Result<(), SyncError> {
    tx.blocking_send(Ok(WatchResponse { kind: Some(kind) })).map_err(|_| SyncError::BadRequest("the host went away".into()))
}
