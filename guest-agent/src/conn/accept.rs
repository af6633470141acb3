//! The accept loop of one listener, feeding tonic the connections it may
//! serve.

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::inbound::Inbound;
use crate::limits;

/// A listener: Unix, TCP or vsock.
pub trait Listener: Send + 'static {
    /// Its connections.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection.
    fn next(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn next(&mut self) -> io::Result<Self::Io> {
        self.accept().await.map(|(io, _)| io)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn next(&mut self) -> io::Result<Self::Io> {
        let (io, _) = self.accept().await?;
        // Small messages (a keystroke, an exit status) go out at once.
        io.set_nodelay(true)?;
        Ok(io)
    }
}

impl Listener for tokio_vsock::VsockListener {
    type Io = tokio_vsock::VsockStream;

    async fn next(&mut self) -> io::Result<Self::Io> {
        self.accept().await.map(|(io, _)| io)
    }
}

/// The connections of `listener` (named `name` in the log), for
/// `serve_with_incoming`. Accepting stops when the stream is dropped.
pub fn incoming<L: Listener>(listener: L, name: String) -> ReceiverStream<io::Result<Inbound<L::Io>>> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(accept_loop(listener, tx, name));
    ReceiverStream::new(rx)
}

async fn accept_loop<L: Listener>(mut listener: L, tx: mpsc::Sender<io::Result<Inbound<L::Io>>>, name: String) {
    let slots = Arc::new(Semaphore::new(limits::MAX_CONNECTIONS));
    let mut starved = false;
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            () = tx.closed() => return,
        };
        let io = loop {
            let accepted = tokio::select! {
                accepted = listener.next() => accepted,
                () = tx.closed() => return,
            };
            match accepted {
                Ok(io) => {
                    starved = false;
                    break io;
                }
                Err(e) if out_of_resources(&e) => {
                    if !starved {
                        tracing::warn!("{name}: cannot accept connections ({e}); retrying every {:?}", limits::ACCEPT_BACKOFF);
                        starved = true;
                    }
                    tokio::time::sleep(limits::ACCEPT_BACKOFF).await;
                }
                // A connection that died before it was accepted, and the like.
                Err(e) => tracing::debug!("{name}: accept failed: {e}"),
            }
        };
        if tx.send(Ok(Inbound::new(io, slot))).await.is_err() {
            return;
        }
    }
}

/// Errors that mean "no descriptors or memory now", which retrying at once
/// cannot fix.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM))
}
