//! The blocking half of one Sync: a thread that applies the host's deletes
//! and archive, in order, as they arrive.
//!
//! The call (async, [`super::session`]) reads messages and hands them over
//! through a bounded queue ([`limits::SYNC_QUEUE`]), so nothing piles up:
//! delete lists are applied one message at a time, and archive chunks are
//! read as one stream, decompressed and written while more arrive. The
//! thread alone owns the snapshot while the call runs, and it settles the
//! state however the Sync ends: on success, the new manifest; on failure,
//! what [`Applier::settle_failure`] says.
//!
//! A failed call stops the thread before its status goes out: the call sets
//! the cancel flag (which the copy checks between chunks, so a zstd bomb
//! already queued stops expanding at once), drops the queue and waits for
//! the thread to end. Nothing of a Sync still runs once its client has the
//! answer.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use hutch_proto::v1::{ManifestEntry, SnapshotState, SyncSummary, WalkRules};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::agreed::Agreed;
use super::receive::{Applier, ApplyError, Cancel};
use super::{SyncError, state};
use crate::limits;

/// One message for the thread.
pub enum Work {
    /// Paths to delete (one `delete` message).
    Delete(Vec<Vec<u8>>),
    /// The next piece of the compressed archive.
    Archive(Vec<u8>),
    /// The end, with the root folder's own entry.
    Finish(Option<ManifestEntry>),
}

/// Where the thread records the snapshot's state.
pub struct Record {
    /// The agent's state folder.
    pub state_dir: PathBuf,
    /// The snapshot's root, as the host names it.
    pub root: String,
    /// The walk rules of this Sync.
    pub rules: WalkRules,
}

/// The running thread of one Sync.
pub struct Worker {
    queue: Option<mpsc::Sender<Work>>,
    cancel: Cancel,
    task: Option<JoinHandle<Result<SyncSummary, SyncError>>>,
}

impl Worker {
    /// Starts applying to `applier` (whose cancel flag is `cancel`). A
    /// push (`agreed`: the Watch call's state) gives its entries back there
    /// however it ends, and leaves the state file to the Watch call.
    pub fn start(applier: Applier, cancel: Cancel, record: Record, agreed: Option<Arc<Mutex<Agreed>>>) -> Worker {
        let (queue, work) = mpsc::channel(limits::SYNC_QUEUE);
        let task = tokio::task::spawn_blocking(move || match agreed {
            Some(agreed) => run_push(applier, work, &agreed),
            None => run(applier, work, &record),
        });
        Worker { queue: Some(queue), cancel, task: Some(task) }
    }

    /// Hands `work` over; `false` if the thread has stopped (its error is
    /// what [`Worker::finish`] returns).
    pub async fn send(&mut self, work: Work) -> bool {
        match &self.queue {
            Some(queue) => queue.send(work).await.is_ok(),
            None => false,
        }
    }

    /// Resolves when the thread has stopped taking work (it failed, or it
    /// reached `Finish`).
    pub async fn stopped(&self) {
        if let Some(queue) = &self.queue {
            queue.closed().await;
        }
    }

    /// Waits for the thread to finish what it was given: the summary, or why
    /// it failed.
    pub async fn finish(mut self) -> Result<SyncSummary, SyncError> {
        self.queue = None;
        self.join().await
    }

    /// Stops the thread (it settles the state of what it had applied) and
    /// waits until it has.
    pub async fn abort(mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.queue = None;
        let _ = self.join().await;
    }

    async fn join(&mut self) -> Result<SyncSummary, SyncError> {
        match self.task.take() {
            Some(task) => task.await.map_err(|e| SyncError::BadRequest(format!("the sync worker panicked: {e}")))?,
            None => Err(SyncError::BadRequest("the sync worker already ended".into())),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Dropped without `finish` or `abort` (the call's task itself was
        // dropped): stop the thread all the same.
        if self.task.is_some() {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

/// The thread: apply everything, then record the outcome.
fn run(mut applier: Applier, mut work: mpsc::Receiver<Work>, record: &Record) -> Result<SyncSummary, SyncError> {
    let outcome = apply(&mut applier, &mut work).and_then(|root| applier.finish(root.as_ref()).map_err(|e| (e, false)));
    match outcome {
        Ok(()) => {
            if applier.changed || !state::exists(&record.state_dir, &record.root) {
                let entries = std::mem::take(&mut applier.expected).into_values().collect();
                save(record, entries)?;
            }
            Ok(applier.summary)
        }
        Err((error, corrupt)) => {
            let old = state::load(&record.state_dir, &record.root).ok().flatten();
            if let Some(entries) = applier.settle_failure(old, corrupt)
                && let Err(e) = save(record, entries)
            {
                tracing::warn!("{e}");
            }
            Err(error.into())
        }
    }
}

/// A push's thread: apply, then hand what the copy now agrees on back.
fn run_push(mut applier: Applier, mut work: mpsc::Receiver<Work>, agreed: &Mutex<Agreed>) -> Result<SyncSummary, SyncError> {
    let outcome = apply(&mut applier, &mut work).and_then(|root| applier.finish(root.as_ref()).map_err(|e| (e, false)));
    let mut state = super::agreed::lock(agreed);
    state.entries = std::mem::take(&mut applier.expected);
    state.unsaved |= applier.changed;
    drop(state);
    outcome.map_err(|(e, _)| SyncError::from(e))?;
    let mut summary = applier.summary;
    summary.skipped = std::mem::take(&mut applier.skipped);
    summary.skipped_more = applier.skipped_more;
    Ok(summary)
}

fn save(record: &Record, entries: Vec<ManifestEntry>) -> Result<(), SyncError> {
    let snapshot = SnapshotState { root: record.root.clone(), rules: Some(record.rules.clone()), entries };
    state::save(&record.state_dir, &snapshot).map_err(SyncError::io(format!("saving the snapshot state in {}", record.state_dir.display())))
}

/// Applies the queue's work up to `Finish`; returns the root's entry, or
/// the error and whether it came from a corrupt archive.
fn apply(applier: &mut Applier, work: &mut mpsc::Receiver<Work>) -> Result<Option<ManifestEntry>, (ApplyError, bool)> {
    loop {
        match work.blocking_recv() {
            Some(Work::Delete(paths)) => {
                for path in &paths {
                    applier.delete(path).map_err(|e| (e, false))?;
                }
            }
            Some(Work::Archive(first)) => {
                let mut stream = ChunkStream { work, chunk: first, pos: 0, finish: None, cut: false };
                return match applier.unpack(&mut stream) {
                    // The archive ended and so did the stream: at `finish`.
                    Ok(()) => stream.finish.ok_or((ApplyError::Cancelled, false)),
                    // A stream that was cut short is not a corrupt one.
                    Err(e) if stream.cut => Err((if matches!(e, ApplyError::Archive(_)) { ApplyError::Cancelled } else { e }, false)),
                    Err(e @ ApplyError::Archive(_)) => Err((e, true)),
                    Err(e) => Err((e, false)),
                };
            }
            Some(Work::Finish(root)) => return Ok(root),
            None => return Err((ApplyError::Cancelled, false)),
        }
    }
}

/// The archive chunks of one call as one byte stream, ending at `finish`.
struct ChunkStream<'a> {
    work: &'a mut mpsc::Receiver<Work>,
    chunk: Vec<u8>,
    pos: usize,
    /// The `finish` that ended the stream.
    finish: Option<Option<ManifestEntry>>,
    /// Whether the stream ended without `finish` (the call failed).
    cut: bool,
}

impl Read for ChunkStream<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.finish.is_some() || self.cut {
                return Ok(0);
            }
            match self.work.blocking_recv() {
                Some(Work::Archive(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Work::Finish(root)) => self.finish = Some(root),
                // The call refuses `delete` after `archive`; never queued.
                Some(Work::Delete(_)) | None => self.cut = true,
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
