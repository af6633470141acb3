//! Forwarding local stdin to the remote process.
//!
//! A plain thread does the blocking reads (stdin may be a terminal, a pipe or
//! a file; none of them can be made non-blocking without affecting other
//! processes that share it). It is never joined: when the command ends, hutch
//! exits and the thread goes with it.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;

use hutch_proto::MAX_CHUNK;
use hutch_proto::v1::exec_request::Kind;
use hutch_proto::v1::{CloseStdin, ExecRequest};
use tokio::sync::mpsc;

/// What local stdin is, as far as forwarding goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Closed or /dev/null: the remote process gets /dev/null; nothing is read.
    Null,
    /// Anything readable: forwarded until EOF.
    Readable,
}

/// Looks at fd 0 to decide whether there is anything to forward.
pub fn classify() -> Source {
    use std::os::unix::fs::MetadataExt;
    let Ok(stdin) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return Source::Null; // fd 0 is closed
    };
    let (Ok(ours), Ok(null)) = (std::fs::File::from(stdin).metadata(), std::fs::metadata("/dev/null")) else {
        return Source::Readable;
    };
    let is_dev_null = ours.file_type().is_char_device() && null.file_type().is_char_device() && ours.rdev() == null.rdev();
    if is_dev_null { Source::Null } else { Source::Readable }
}

/// Starts the thread that reads stdin and sends it as `stdin` requests,
/// followed by `close_stdin` at EOF (or on a read error).
pub fn forward(requests: mpsc::Sender<ExecRequest>) {
    let spawned = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; MAX_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                // A prompt of `mode = "ask"` takes the keys that answer it.
                Ok(n) if super::ask::intercept(&buf[..n]) => {}
                Ok(n) => {
                    let request = ExecRequest { kind: Some(Kind::Stdin(bytes::Bytes::copy_from_slice(&buf[..n]))) };
                    if requests.blocking_send(request).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = requests.blocking_send(ExecRequest { kind: Some(Kind::CloseStdin(CloseStdin {})) });
    });
    if let Err(e) = spawned {
        eprintln!("hutch: warning: cannot start the stdin thread ({e}); the command gets no stdin");
    }
}
