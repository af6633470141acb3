//! `hutch ps`: a VM's sessions as a table for people and as JSON for scripts.
//!
//! Everything shown comes from the guest, which is not trusted: the list
//! was checked (`super::check`), control characters in names and commands
//! are shown escaped, never sent to the terminal as they are, and every
//! cell is cut at [`limits::TABLE_CELL_CHARS`], since the table pads each
//! row to its widest cell.

use hutch_proto::v1::{ListSessionsResponse, SessionInfo, SessionState, exited};
use serde_json::{Value, json};

use crate::exit;
use crate::untrusted::{limits, text};

/// Guest text as one cell of the table: escaped, and cut short.
fn cell(guest: &str) -> String {
    text::cut(guest, limits::TABLE_CELL_CHARS.max_usize())
}

/// The table `hutch ps` prints.
pub fn text(list: &ListSessionsResponse) -> String {
    let rows: Vec<[String; 6]> = list
        .sessions
        .iter()
        .map(|s| {
            let attached = match (s.attached, s.viewers) {
                (true, 0) => "yes".to_owned(),
                (true, n) => format!("yes +{n}"),
                (false, 0) => "no".to_owned(),
                (false, n) => format!("no +{n}"),
            };
            let attached = if s.state == SessionState::SessionRunning as i32 { attached } else { "-".into() };
            let started = age(list.now_unix_ms.saturating_sub(s.started_unix_ms));
            let command = s.argv.iter().map(String::as_str).take(64).collect::<Vec<_>>().join(" ");
            [cell(&s.name), s.pid.to_string(), state(s), attached, started, cell(&command)]
        })
        .collect();
    let header = ["TAG", "PID", "STATE", "ATTACHED", "STARTED", "COMMAND"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// What `hutch ps` adds on stderr when there is no session: how long the
/// agent has run, since a restart of it or of the VM ends every session.
pub fn empty_note(list: &ListSessionsResponse) -> Option<String> {
    if !list.sessions.is_empty() {
        return None;
    }
    let up = age(list.now_unix_ms.saturating_sub(list.agent_started_unix_ms));
    let up = up.trim_end_matches(" ago");
    Some(format!("no sessions; the agent started {up} ago (sessions end when the agent or the VM restarts)"))
}

/// The JSON array `hutch ps --json` prints.
pub fn json(list: &ListSessionsResponse) -> Value {
    Value::Array(list.sessions.iter().map(entry).collect())
}

fn entry(s: &SessionInfo) -> Value {
    let state = match SessionState::try_from(s.state) {
        Ok(SessionState::SessionRunning) => "running",
        Ok(SessionState::SessionExited) => "exited",
        Ok(SessionState::SessionLost) => "lost",
        _ => "unknown",
    };
    let dropped = s.dropped.unwrap_or_default();
    let mut value = json!({
        "tag": text::shown(&s.name), "pid": s.pid, "argv": s.argv.iter().map(|a| text::shown(a)).collect::<Vec<_>>(), "state": state, "tty": s.tty,
        "attached": s.attached, "viewers": s.viewers,
        "started_unix_ms": s.started_unix_ms,
        "ended_unix_ms": (s.ended_unix_ms > 0).then_some(s.ended_unix_ms),
        "buffer_bytes": s.buffer_bytes, "buffered_bytes": s.buffered_bytes,
        "dropped_stdout_bytes": dropped.stdout_bytes, "dropped_stderr_bytes": dropped.stderr_bytes,
        "exit_code": Value::Null, "signal": Value::Null, "timed_out": false,
    });
    if let Some(exited) = &s.exited {
        value["exit_code"] = json!(exit::of_exited(exited).ok());
        value["timed_out"] = json!(exited.timed_out);
        if let Some(exited::Status::Signal(number)) = exited.status {
            value["signal"] =
                json!(if exited.signal_name.is_empty() { number.to_string() } else { format!("SIG{}", text::shown(&exited.signal_name)) });
        }
    }
    if !s.lost_reason.is_empty() {
        value["lost_reason"] = json!(text::shown(&s.lost_reason));
    }
    value
}

/// "running", "exited 3", "killed by TERM", "timed out", "lost (the agent restarted)".
fn state(s: &SessionInfo) -> String {
    match SessionState::try_from(s.state) {
        Ok(SessionState::SessionRunning) => "running".into(),
        Ok(SessionState::SessionExited) => match &s.exited {
            Some(e) if e.timed_out => "timed out".into(),
            Some(e) => match e.status {
                Some(exited::Status::Code(code)) => format!("exited {code}"),
                Some(exited::Status::Signal(n)) if e.signal_name.is_empty() => format!("killed by signal {n}"),
                Some(exited::Status::Signal(_)) => format!("killed by {}", cell(&e.signal_name)),
                None => "exited".into(),
            },
            None => "exited".into(),
        },
        Ok(SessionState::SessionLost) => format!("lost ({})", cell(&s.lost_reason)),
        _ => "unknown".into(),
    }
}

/// "12s ago", "5m ago", "3h ago", "2d ago".
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutch_proto::v1::Exited;

    fn session(name: &str, state: SessionState) -> SessionInfo {
        SessionInfo { name: name.into(), pid: 42, argv: vec!["make".into(), "-j8".into()], state: state as i32, ..Default::default() }
    }

    #[test]
    fn the_table_says_how_each_session_is() {
        let mut done = session("build", SessionState::SessionExited);
        done.exited = Some(Exited { status: Some(exited::Status::Code(3)), ..Default::default() });
        let mut killed = session("k", SessionState::SessionExited);
        killed.exited = Some(Exited { status: Some(exited::Status::Signal(15)), signal_name: "TERM".into(), ..Default::default() });
        let mut lost = session("old", SessionState::SessionLost);
        lost.lost_reason = "the agent restarted".into();
        let mut running = session("web\x1b[2J", SessionState::SessionRunning);
        running.attached = true;
        running.started_unix_ms = 1_000;
        let list = ListSessionsResponse { sessions: vec![running, done, killed, lost], now_unix_ms: 181_000, ..Default::default() };
        let table = text(&list);
        assert!(table.starts_with("TAG"), "{table}");
        assert!(table.contains("running") && table.contains("yes") && table.contains("3m ago"), "{table}");
        assert!(table.contains("exited 3"), "{table}");
        assert!(table.contains("killed by TERM"), "{table}");
        assert!(table.contains("lost (the agent restarted)"), "{table}");
        assert!(!table.contains('\x1b'), "escape sequences from the guest must not reach the terminal: {table:?}");
        // One huge command does not widen every row (nor panic the formatter).
        let mut long = session("long", SessionState::SessionRunning);
        long.argv = vec!["x".repeat(100_000)];
        let table =
            text(&ListSessionsResponse { sessions: vec![long, session("short", SessionState::SessionRunning)], ..Default::default() });
        assert!(table.lines().all(|l| l.chars().count() < 300), "{}", table.len());
        let json = json(&list);
        assert_eq!(json[1]["exit_code"], 3);
        assert_eq!(json[2]["exit_code"], 143);
        assert_eq!(json[2]["signal"], "SIGTERM");
        assert_eq!(json[3]["state"], "lost");
    }
}
