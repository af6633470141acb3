//! Forwarding the signals hutch receives to the remote process group.
//!
//! In pipe mode Ctrl-C reaches hutch as SIGINT and is passed on, so the remote
//! command decides what an interrupt means, as it would locally. A third SIGINT
//! gives up on the remote side: hutch leaves, and the agent kills the group
//! when the call is dropped. In PTY mode Ctrl-C is just a byte sent to the
//! remote terminal; SIGTERM/SIGHUP sent to hutch itself are still forwarded.

use hutch_proto::v1::exec_request::Kind;
use hutch_proto::v1::{ExecRequest, SignalRequest, TerminalSize};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::terminal;

/// SIGINTs after which hutch stops waiting for the remote command.
pub const INTERRUPTS_TO_ABANDON: u32 = 3;

/// Forwards INT, TERM, HUP and QUIT until the user insists on leaving.
/// Resolves after [`INTERRUPTS_TO_ABANDON`] SIGINTs; otherwise runs forever.
pub async fn forward(requests: mpsc::Sender<ExecRequest>) -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut interrupts = 0;
    loop {
        let name = tokio::select! {
            _ = int.recv() => {
                interrupts += 1;
                if interrupts >= INTERRUPTS_TO_ABANDON {
                    return Ok(());
                }
                "INT"
            }
            _ = term.recv() => "TERM",
            _ = hup.recv() => "HUP",
            _ = quit.recv() => "QUIT",
        };
        let request = ExecRequest { kind: Some(Kind::Signal(SignalRequest { name: name.into() })) };
        if requests.send(request).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
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
