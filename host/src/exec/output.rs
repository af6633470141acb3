//! Where remote output goes: straight to local stdout/stderr (in arrival
//! order, through one writer thread so a blocked terminal never stalls the
//! event loop), or into memory for `--json`.

use std::io::{ErrorKind, Write};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, watch};

/// Chunks waiting for the writer thread; when full, hutch stops reading from
/// the agent and HTTP/2 flow control slows the remote process down.
const WRITE_QUEUE: usize = 16;

/// Which local stream a chunk belongs to.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Local stdout.
    Stdout,
    /// Local stderr.
    Stderr,
}

/// Receives the remote output.
pub enum Sink {
    /// Writes to the local stdout/stderr as it arrives.
    Local(LocalWriter),
    /// Keeps everything for the JSON report.
    Capture {
        /// Captured stdout.
        stdout: Vec<u8>,
        /// Captured stderr.
        stderr: Vec<u8>,
    },
}

/// The handle to the writer thread.
pub struct LocalWriter {
    chunks: Option<mpsc::Sender<(Target, Vec<u8>)>>,
    thread: Option<JoinHandle<()>>,
    broken: watch::Receiver<bool>,
}

impl Sink {
    /// A sink that writes to the local terminal/pipes.
    pub fn local() -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<(Target, Vec<u8>)>(WRITE_QUEUE);
        let (broken_tx, broken) = watch::channel(false);
        let thread = std::thread::Builder::new().name("output".into()).spawn(move || {
            let mut stdout_ok = true;
            while let Some((target, data)) = rx.blocking_recv() {
                match target {
                    Target::Stdout if stdout_ok => {
                        let mut out = std::io::stdout().lock();
                        if let Err(e) = out.write_all(&data).and_then(|()| out.flush()) {
                            stdout_ok = false;
                            if e.kind() == ErrorKind::BrokenPipe {
                                let _ = broken_tx.send(true);
                            }
                        }
                    }
                    Target::Stdout => {}
                    Target::Stderr => {
                        let _ = std::io::stderr().lock().write_all(&data);
                    }
                }
            }
        })?;
        Ok(Sink::Local(LocalWriter { chunks: Some(tx), thread: Some(thread), broken }))
    }

    /// A sink that captures everything.
    pub fn capture() -> Self {
        Sink::Capture { stdout: Vec::new(), stderr: Vec::new() }
    }

    /// Hands over one chunk; waits when the local side is slow.
    pub async fn write(&mut self, target: Target, data: Vec<u8>) {
        match self {
            Sink::Local(writer) => {
                if let Some(tx) = &writer.chunks {
                    let _ = tx.send((target, data)).await;
                }
            }
            Sink::Capture { stdout, stderr } => match target {
                Target::Stdout => stdout.extend_from_slice(&data),
                Target::Stderr => stderr.extend_from_slice(&data),
            },
        }
    }

    /// Resolves when local stdout turns out to be a closed pipe (the reader
    /// went away, as in `hutch exec -- yes | head -1`). Never resolves otherwise.
    pub async fn broken_pipe(&mut self) {
        match self {
            Sink::Local(writer) => {
                if writer.broken.wait_for(|broken| *broken).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            Sink::Capture { .. } => std::future::pending().await,
        }
    }

    /// Waits until everything handed over has been written.
    pub fn finish(&mut self) {
        if let Sink::Local(writer) = self {
            writer.chunks = None;
            if let Some(thread) = writer.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// The captured output, if this sink captures.
    pub fn captured(self) -> Option<(Vec<u8>, Vec<u8>)> {
        match self {
            Sink::Capture { stdout, stderr } => Some((stdout, stderr)),
            Sink::Local(_) => None,
        }
    }
}
