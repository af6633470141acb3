//! Forwarding the signals hutch receives to the remote process group.
//!
//! In pipe mode Ctrl-C reaches hutch as SIGINT and is passed on, so the remote
//! command decides what an interrupt means, as it would locally. A third SIGINT
//! gives up on the remote side: hutch leaves, and the agent kills the group
//! when the call is dropped. In PTY mode Ctrl-C is just a byte sent to the
//! remote terminal; SIGTERM/SIGHUP sent to hutch itself are still forwarded.
//!
//! Attached to a session (`exec --keep`, `attach`), hutch going away must not
//! end the session: SIGHUP (the terminal closed), SIGTERM (hutch was asked to
//! stop) and SIGQUIT (Ctrl-\\ on a terminal that is not raw) detach instead.
//! SIGINT is still passed on (a viewer, which may not signal, detaches).

use hutch_proto::v1::exec_request::Kind;
use hutch_proto::v1::{ExecRequest, SignalRequest, TerminalSize};
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::terminal;

/// SIGINTs after which hutch stops waiting for the remote command.
pub const INTERRUPTS_TO_ABANDON: u32 = 3;

/// What a signal means for the client hutch is.
#[derive(Clone, Copy, Debug)]
pub enum Policy {
    /// A plain exec: pass everything on.
    Exec,
    /// A session's client: leave it running on HUP, TERM and QUIT.
    Session {
        /// Watching only: SIGINT detaches too.
        viewer: bool,
    },
}

/// Why hutch stops waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// The user insisted on leaving ([`INTERRUPTS_TO_ABANDON`] SIGINTs).
    Abandon,
    /// Leave the session running (sessions only).
    Detach,
}

/// Forwards INT, TERM, HUP and QUIT as `policy` says until hutch should
/// stop waiting; otherwise runs forever. The signals are listened for from
/// this call on, not from the future's first poll: a Ctrl-C that comes
/// while the first messages are handled is not lost.
pub fn forward(
    requests: mpsc::Sender<ExecRequest>,
    policy: Policy,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<Local>>> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    Ok(async move {
        let mut interrupts = 0;
        let session = matches!(policy, Policy::Session { .. });
        loop {
            let name = tokio::select! {
                _ = int.recv() => {
                    if matches!(policy, Policy::Session { viewer: true }) {
                        return Ok(Local::Detach);
                    }
                    interrupts += 1;
                    if interrupts >= INTERRUPTS_TO_ABANDON {
                        return Ok(Local::Abandon);
                    }
                    "INT"
                }
                _ = term.recv() => if session { return Ok(Local::Detach) } else { "TERM" },
                _ = hup.recv() => if session { return Ok(Local::Detach) } else { "HUP" },
                _ = quit.recv() => if session { return Ok(Local::Detach) } else { "QUIT" },
            };
            let request = ExecRequest { kind: Some(Kind::Signal(SignalRequest { name: name.into() })) };
            if requests.send(request).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
}

/// Resolves with the first SIGINT, SIGTERM or SIGHUP hutch receives: how a
/// wait of hutch's own (a boot, the start of a command, `hutch forward`)
/// ends when the user asks. Once hutch listens for a signal the default
/// action (dying) is gone for good, so every wait after that point must
/// listen too.
pub async fn termination() -> std::io::Result<Signal> {
    let (mut int, mut term, mut hup) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?, signal(SignalKind::hangup())?);
    Ok(tokio::select! {
        _ = int.recv() => Signal::SIGINT,
        _ = term.recv() => Signal::SIGTERM,
        _ = hup.recv() => Signal::SIGHUP,
    })
}

/// Sends a resize whenever the local terminal's size changes (SIGWINCH).
pub async fn forward_resizes(requests: mpsc::Sender<ExecRequest>) -> std::io::Result<()> {
    let mut winch = signal(SignalKind::window_change())?;
    while winch.recv().await.is_some() {
        if let Some((rows, cols)) = terminal::size() {
            let request = ExecRequest { kind: Some(Kind::Resize(TerminalSize { rows: rows.into(), cols: cols.into() })) };
            if requests.send(request).await.is_err() {
                break;
            }
        }
    }
    Ok(())
}
