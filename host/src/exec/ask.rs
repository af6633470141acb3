//! The one-line prompt of `mode = "ask"` on an interactive `hutch run`,
//! `exec` or `shell` terminal: when the guest asks for a host no rule
//! covers, the terminal shows
//!
//! ```text
//! hutch: app asks to reach example.com:443 (CONNECT): allow [o]nce, [a]lways (while the VM runs), [d]eny? 60 s
//! ```
//!
//! and the next key answers. While the prompt shows it takes every key
//! (a key meant for the command must not answer by accident, and an answer
//! must not reach the command); `o`/`y` allow the waiting requests, `a`
//! adds a rule for the host for as long as the VM runs (`hutch allow
//! --save` keeps one in `hutch.toml`), `d`/`n`/Ctrl-C deny it for as long
//! as the VM runs; other keys are ignored. An answer given elsewhere (another
//! terminal, `hutch allow`) or the timeout clears the prompt.
//!
//! The stdin threads (`stdin::forward`, `keys::forward`) hand every chunk
//! they read to [`intercept`] first; it takes the chunk while a prompt waits.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::net::ask::{AskEvent, Question};
use crate::net::control::{ChangeKind, Watcher};
use crate::untrusted::text;

/// Where the keys of a waiting prompt go.
static WAITING: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>> = Mutex::new(None);

/// Ctrl-C on a raw terminal.
const CTRL_C: u8 = 0x03;

/// Takes `chunk` (keys just read from the terminal) when a prompt waits for
/// its answer; `false` when it is the command's.
pub fn intercept(chunk: &[u8]) -> bool {
    match WAITING.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        Some(keys) => keys.send(chunk.to_vec()).is_ok(),
        None => false,
    }
}

/// The prompt's task: runs until the exec ends (the caller aborts it) or
/// the network process goes away. `raw`: the terminal is in raw mode.
pub async fn prompt(net_dir: PathBuf, vm: String, raw: bool) {
    let Ok((mut watcher, pending)) = Watcher::connect(&net_dir).await else { return };
    let mut queue: Vec<Question> = pending;
    let eol = if raw { "\r\n" } else { "\n" };
    let by = format!("the prompt of hutch (pid {})", std::process::id());
    let (keys_tx, mut keys) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut shown: Option<u64> = None;
    let mut answered: Option<u64> = None;
    loop {
        if shown.is_none()
            && let Some(question) = queue.first()
        {
            eprint!("{eol}{}", line(&vm, question));
            *WAITING.lock().unwrap_or_else(PoisonError::into_inner) = Some(keys_tx.clone());
            shown = Some(question.id);
        }
        tokio::select! {
            event = watcher.next() => match event {
                Ok(Some(AskEvent::Question(question))) => queue.push(question),
                Ok(Some(AskEvent::Settled { id, outcome })) => {
                    queue.retain(|q| q.id != id);
                    if shown == Some(id) || answered == Some(id) {
                        if shown == Some(id) {
                            stop_waiting();
                            shown = None;
                        }
                        eprint!("hutch: {}{eol}", text::shown(&outcome));
                    }
                }
                Ok(None) | Err(_) => break,
            },
            Some(chunk) = keys.recv() => {
                let Some(id) = shown else { continue };
                let Some(kind) = chunk.iter().find_map(|b| answer(*b)) else { continue };
                stop_waiting();
                shown = None;
                queue.retain(|q| q.id != id);
                // What it did comes back as the question's settlement.
                if watcher.answer(id, kind, &by).await.is_err() {
                    break;
                }
                answered = Some(id);
                eprint!("{eol}");
            }
        }
    }
    stop_waiting();
}

fn stop_waiting() {
    WAITING.lock().unwrap_or_else(PoisonError::into_inner).take();
}

/// The prompt line (the host and method are the guest's: escaped).
fn line(vm: &str, q: &Question) -> String {
    format!(
        "hutch: {vm} asks to reach {}:{} ({}): allow [o]nce, [a]lways (while the VM runs), [d]eny? {} s ",
        text::shown(&q.host),
        q.port,
        text::shown(&q.method),
        q.timeout_ms / 1000
    )
}

/// The answer a key gives, if any.
fn answer(key: u8) -> Option<ChangeKind> {
    match key {
        b'o' | b'O' | b'y' | b'Y' => Some(ChangeKind::Once),
        b'a' | b'A' => Some(ChangeKind::Allow),
        b'd' | b'D' | b'n' | b'N' | CTRL_C => Some(ChangeKind::Deny),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_answer_and_nothing_else_does() {
        assert_eq!(answer(b'o'), Some(ChangeKind::Once));
        assert_eq!(answer(b'A'), Some(ChangeKind::Allow));
        assert_eq!(answer(CTRL_C), Some(ChangeKind::Deny));
        assert_eq!(answer(b'\r'), None);
        assert!(!intercept(b"x"), "no prompt waits: the key is the command's");
    }
}
