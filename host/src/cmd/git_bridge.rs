//! `hutch git-bridge git-upload-pack` (hidden): runs `git upload-pack` on
//! the guest's gitdir through an agent exec and relays the bytes both
//! ways, for host git's `ext::` transport. What it relays is counted and
//! bounded by [`crate::git::bridge`], whose documentation says how.

use std::collections::HashMap;

use futures_util::StreamExt;
use hutch_proto::v1::exec_response::Kind;
use hutch_proto::v1::{CloseStdin, ExecRequest, Start, StdinMode, exec_request, exited};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::Error;
use crate::git::bridge::{ENV_ADDR, ENV_GITDIR, ENV_VM, Relay, max_bytes};
use crate::state::VmName;
use crate::target::Target;
use crate::transport::CallError;
use crate::untrusted::limits::GIT_FETCH_IDLE as IDLE;

/// The guest's error output kept (then escaped) for host git.
const MAX_STDERR: usize = 4096;
/// Bytes per stdin message (the agent takes up to 64 KiB).
const STDIN_CHUNK: usize = 64 * 1024;

/// Runs the bridge for `service`; returns the exit code host git sees.
pub async fn run(service: &str) -> Result<u8, Error> {
    if service != "git-upload-pack" {
        eprintln!(
            "hutch git-bridge: only fetches are served (git-upload-pack), not {}",
            crate::untrusted::text::shown_bytes(service.as_bytes())
        );
        return Ok(128);
    }
    let gitdir = std::env::var(ENV_GITDIR).map_err(|_| Error::Usage(format!("{ENV_GITDIR} is not set")))?;
    let target = match (std::env::var(ENV_VM), std::env::var(ENV_ADDR)) {
        (Ok(name), _) => Target::vm(Some(&VmName::new(&name).map_err(|e| Error::Usage(e.to_string()))?))?,
        (_, Ok(addr)) => {
            let token: Option<std::path::PathBuf> = std::env::var_os("HUTCH_TOKEN_FILE").map(Into::into);
            Target::resolve(None, Some(&addr.parse()?), token.as_deref())?
        }
        _ => return Err(Error::Usage(format!("set {ENV_VM} or {ENV_ADDR}"))),
    };
    let mut client = target.connect().await?;
    let (tx, rx) = mpsc::channel(8);
    let start = Start {
        argv: ["git", "upload-pack", "--strict", "--timeout=120", &gitdir].map(str::to_owned).to_vec(),
        env: HashMap::new(),
        cwd: "/".into(),
        tty: None,
        timeout_ms: 0,
        stdin: StdinMode::StdinPipe as i32,
        tag: format!("hutch-git-bridge-{}", std::process::id()),
        session: None,
    };
    let send = |kind| ExecRequest { kind: Some(kind) };
    // `rx` is still ours and the queue empty: the start is always queued
    // (were it not, the agent would refuse an exec without one).
    let _ = tx.send(send(exec_request::Kind::Start(start))).await;
    let mut responses = client.exec(ReceiverStream::new(rx)).await.map_err(CallError::from_status)?.into_inner();
    let stdin_tx = tx.clone();
    let pump = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if stdin_tx.send(send(exec_request::Kind::Stdin(chunk))).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = stdin_tx.send(send(exec_request::Kind::CloseStdin(CloseStdin {}))).await;
    });
    let mut stdout = tokio::io::stdout();
    let mut relay = Relay::new(max_bytes());
    let mut stderr = Vec::new();
    let code = loop {
        let message = match tokio::time::timeout(IDLE, responses.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(status))) => break fail(&stderr, &format!("the agent: {}", status.message())),
            Ok(None) => break fail(&stderr, "the agent ended the exec without saying how it ended"),
            Err(_) => break fail(&stderr, &format!("the guest sent nothing for {} s", IDLE.as_secs())),
        };
        match message.kind {
            Some(Kind::Stdout(data)) => {
                if let Err(e) = relay.check(&data) {
                    break fail(&stderr, &e.to_string());
                }
                if stdout.write_all(&data).await.is_err() || stdout.flush().await.is_err() {
                    break 1;
                }
            }
            Some(Kind::Stderr(data)) => stderr.extend_from_slice(&data[..data.len().min(MAX_STDERR.saturating_sub(stderr.len()))]),
            Some(Kind::Exited(exited)) => {
                pass_on(&stderr);
                break match exited.status {
                    Some(exited::Status::Code(0)) => 0,
                    _ => 128,
                };
            }
            Some(Kind::StartFailed(failed)) => {
                break fail(&stderr, &format!("git upload-pack did not start in the guest: {}", failed.message));
            }
            _ => {}
        }
    };
    pump.abort();
    drop(tx);
    Ok(code)
}

/// Passes the guest's error output on to host git, escaped.
fn pass_on(stderr: &[u8]) {
    if !stderr.is_empty() {
        eprintln!("guest: {}", crate::untrusted::text::shown_bytes(stderr));
    }
}

fn fail(stderr: &[u8], why: &str) -> u8 {
    pass_on(stderr);
    eprintln!("hutch git-bridge: {}", crate::untrusted::text::shown_bytes(why.as_bytes()));
    128
}
