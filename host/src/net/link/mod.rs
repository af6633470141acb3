//! The link: on QEMU, the guest's way to the proxy through its own kernel's
//! TCP stack instead of the agent's vsock pipe.
//!
//! The QEMU backend gives each VM a virtio-net device whose other end is a
//! socket QEMU listens on (`-netdev stream`, [`addresses::SOCKET`] in the
//! VM's folder). The network process connects to it and runs a user-space
//! TCP/IP stack there ([`stack`]) that answers only the proxy's port on
//! [`addresses::HOST_ADDRESS`]; each connection goes to the same proxy, with
//! the same policy, audit and secrets, as one from the vsock pipe. The agent
//! brings the guest's end up when the `EgressListen` call asks it to, and
//! the proxy variables then point through it.
//!
//! Why: under emulation the guest's single vCPU is the bottleneck, and the
//! pipe costs it a user-space relay (loopback read, gRPC framing, vsock
//! write in 4 KiB buffers) per byte. Over the link a download costs the
//! guest what it costs over QEMU's own user-mode network, in 64 KiB frames.
//! What the guest can do with the link is what it can do with the pipe:
//! reach the proxy, which decides.

pub mod addresses;
pub mod frames;
pub mod io;
pub mod stack;

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UnixStream;
use tokio::sync::Notify;

use self::frames::FrameError;
use self::stack::Stack;
use super::context::Context;

/// How much is read from QEMU at a time.
const READ_CHUNK: usize = 256 * 1024;
/// How long the stack waits when it has no timer of its own.
const IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the link stopped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Reading or writing QEMU's socket failed.
    #[error("the link's socket: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU sent a frame the link cannot carry.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Connects to the link's socket in the VM's folder `vm_dir`; `None` when
/// the VM has none (not a QEMU VM, or one started before links) or QEMU
/// does not answer.
pub async fn connect(vm_dir: &Path) -> Option<UnixStream> {
    let path = vm_dir.join(addresses::SOCKET);
    if !path.exists() {
        return None;
    }
    match UnixStream::connect(&path).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            eprintln!(
                "hutch net {}: the link's socket {} does not answer ({e}); the guest uses the vsock pipe",
                std::process::id(),
                path.display()
            );
            None
        }
    }
}

/// Serves the link for as long as the process lives: on `stream`, then,
/// whenever it ends (a frame the link cannot carry, QEMU closing it), on a
/// new connection to the VM's socket in `vm_dir`, which QEMU accepts again.
/// Each end resets the connections on the link, nothing else.
pub async fn keep(stream: UnixStream, vm_dir: std::path::PathBuf, ctx: Arc<Context>, port: u16) {
    let pid = std::process::id();
    let mut stream = Some(stream);
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        if let Some(stream) = stream.take() {
            match serve(stream, ctx.clone(), port).await {
                Ok(()) => eprintln!("hutch net {pid}: QEMU closed the link"),
                Err(e) => eprintln!("hutch net {pid}: the link was reset: {e}"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        match UnixStream::connect(vm_dir.join(addresses::SOCKET)).await {
            Ok(again) => {
                eprintln!("hutch net {pid}: the link is connected again");
                stream = Some(again);
                backoff = std::time::Duration::from_millis(100);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => {}
        }
    }
}

/// Serves the link on `stream` until QEMU closes it: guest connections to
/// `port` go to the proxy with `ctx`.
pub async fn serve(stream: UnixStream, ctx: Arc<Context>, port: u16) -> Result<(), LinkError> {
    let started = std::time::Instant::now();
    let now = || smoltcp::time::Instant::from_micros(i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX));
    let wake = Arc::new(Notify::new());
    let mut stack = Stack::new(port, wake.clone(), now());
    let mut incoming = BytesMut::with_capacity(READ_CHUNK);
    loop {
        for io in stack.step(now()) {
            tokio::spawn(super::proxy::serve(io, ctx.clone()));
        }
        while !stack.frames().out().is_empty() {
            match stream.try_write(stack.frames().out()) {
                Ok(n) => stack.frames().sent(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        let blocked = !stack.frames().out().is_empty();
        // While QEMU is not taking frames, only its socket (or a frame in)
        // can make progress: no timer, lest the loop spin.
        let delay = if blocked { IDLE } else { stack.delay(now()).unwrap_or(IDLE) };
        tokio::select! {
            // Frames in make answers (ACKs) out: none are read while QEMU
            // is not taking what is already there.
            readable = stream.readable(), if !stack.frames().out_full() => {
                readable?;
                incoming.reserve(READ_CHUNK);
                match stream.try_read_buf(&mut incoming) {
                    Ok(0) => return Ok(()),
                    Ok(_) => stack.frames().take_in(&mut incoming)?,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
            writable = stream.writable(), if blocked => writable?,
            () = wake.notified() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
}
