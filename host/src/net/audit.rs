//! The audit log: one JSON line per egress decision, per exec, per change of
//! the network policy of a running VM and per question of `mode = "ask"`,
//! in the VM's state folder (`audit.jsonl`, mode 0600), read by `hutch log`.
//!
//! Two kinds of writers append to it: the VM's network process (egress,
//! policy changes, questions) and every `hutch` command that runs something
//! in the VM (exec). Each event is
//! one `write(2)` of one line to a file opened with `O_APPEND`, so lines from
//! concurrent writers never interleave. Secret values never reach it: egress
//! events carry what the guest sent (placeholders) and the names of secrets
//! added, and exec events are redacted by the caller.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The log's file name in the VM's state folder.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// The audit log of the VM whose state folder is `vm_dir`.
pub fn path(vm_dir: &Path) -> PathBuf {
    vm_dir.join(AUDIT_FILE)
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// The kinds of events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum What {
    /// A guest program asked to reach a host.
    Egress(Egress),
    /// A command ran in the VM.
    Exec(Exec),
    /// The running VM's policy changed (`hutch allow`/`deny`, an answer, `hutch up`).
    Policy(PolicyChange),
    /// A request waits for a person's answer (`mode = "ask"`).
    Ask(Asked),
}

/// One change of a running VM's network policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// `allow`, `deny`, `allow once` or `reload` (the configuration read again by `hutch up`).
    pub action: String,
    /// The pattern (empty for a reload).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pattern: String,
    /// Who changed it (`hutch allow`, `the prompt of hutch exec`, `hutch up`).
    pub by: String,
    /// Where the rule was also saved (`FILE:LINE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<String>,
    /// Rules of the other list it undid, as the log names rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<String>,
    /// Waiting requests it answered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answered: u64,
    /// Open connections it cut.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cut: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A question of `mode = "ask"`: its request's line follows once it is answered or times out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Asked {
    /// The question's number.
    pub id: u64,
    /// The host asked for.
    pub host: String,
    /// The port.
    pub port: u16,
    /// `CONNECT` or the request's method.
    pub method: String,
    /// How long it waits, in milliseconds.
    pub timeout_ms: u64,
}

/// One egress decision: a CONNECT tunnel, a plain-HTTP request, or one
/// request inside an intercepted TLS connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Egress {
    /// The host asked for (a name or an address).
    pub host: String,
    /// The port.
    pub port: u16,
    /// `CONNECT`, or the HTTP method of a request.
    pub method: String,
    /// A request's path, without its query (which may hold tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The rule that allowed it (`"github.com" (built-in)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The address hutch connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// TLS was terminated by hutch to add secrets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intercepted: bool,
    /// Names of the secrets added to this request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// An HTTP status hutch or the server answered, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Bytes from the guest to the host.
    pub bytes_up: u64,
    /// Bytes from the host to the guest.
    pub bytes_down: u64,
    /// From the request to the end of the connection or response.
    pub duration_ms: u64,
}

/// One command run in the VM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    /// The command line (secret values replaced by `[secret NAME]`).
    pub argv: Vec<String>,
    /// The working directory in the guest.
    pub cwd: String,
    /// The exec's tag (`hutch-<pid>`).
    pub tag: String,
    /// Exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal name (`SIGTERM`), when a signal ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Why it did not run or its end is unknown (start failure, lost connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time.
    pub duration_ms: u64,
}

impl Event {
    /// An event that happens now.
    pub fn now(what: What) -> Event {
        Event { time: rfc3339(SystemTime::now()), what }
    }
}

/// Appends `event` to the log at `path` as one line; failures are only
/// logged (auditing never breaks the command or the connection it records).
pub fn append(path: &Path, event: &Event) {
    if let Err(e) = try_append(path, event) {
        tracing::warn!("cannot write the audit log {}: {e}", path.display());
    }
}

fn try_append(path: &Path, event: &Event) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    // One write: O_APPEND makes it land whole at the end.
    file.write_all(&line)
}

/// Milliseconds of `d`, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `t` as RFC 3339 in UTC with milliseconds (`2026-12-01T15:04:05.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rest / 3600, rest % 3600 / 60, rest % 60, since.subsec_millis())
}

/// The calendar date of day `z` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// One line of `hutch log` for a human: time, kind, what, outcome.
pub fn human(event: &Event) -> String {
    let time = event.time.get(..23).unwrap_or(&event.time).replace('T', " ");
    match &event.what {
        What::Egress(e) => {
            let target = match &e.path {
                Some(path) => format!("{} {}:{}{path}", e.method, e.host, e.port),
                None => format!("{} {}:{}", e.method, e.host, e.port),
            };
            let why = match (&e.rule, &e.reason) {
                (_, Some(reason)) => reason.clone(),
                (Some(rule), None) => rule.clone(),
                (None, None) => String::new(),
            };
            let secrets = if e.secrets.is_empty() { String::new() } else { format!(" +{}", e.secrets.join(",")) };
            let status = e.status.map(|s| format!(" {s}")).unwrap_or_default();
            format!(
                "{time}  egress {:<5} {target}{status}{secrets}  {why}  ↑{} ↓{} {} ms",
                e.decision,
                size(e.bytes_up),
                size(e.bytes_down),
                e.duration_ms
            )
        }
        What::Exec(x) => {
            let end = match (&x.exit_code, &x.signal, &x.error) {
                (_, _, Some(error)) => format!("error: {error}"),
                (_, Some(signal), None) => signal.clone(),
                (Some(code), None, None) => format!("exit {code}"),
                (None, None, None) => "?".into(),
            };
            format!("{time}  exec   {end:<7} {}  (in {}) {} ms", x.argv.join(" "), x.cwd, x.duration_ms)
        }
        What::Policy(p) => {
            let what = if p.pattern.is_empty() { p.action.clone() } else { format!("{} {}", p.action, p.pattern) };
            let mut line = format!("{time}  policy {what}  by {}", p.by);
            if let Some(saved) = &p.saved {
                line.push_str(&format!("; saved to {saved}"));
            }
            if !p.undone.is_empty() {
                line.push_str(&format!("; undid {}", p.undone.join(", ")));
            }
            if p.answered > 0 {
                line.push_str(&format!("; answered {} waiting", p.answered));
            }
            if p.cut > 0 {
                line.push_str(&format!("; cut {} open", p.cut));
            }
            line
        }
        What::Ask(a) => {
            let pattern = crate::net::policy::Policy::suggestion(&a.host, a.port);
            format!(
                "{time}  ask    {} {}:{}  waiting up to {} s for an answer: `hutch allow {pattern}`, `hutch allow --once {pattern}` or `hutch deny {pattern}`",
                a.method,
                a.host,
                a.port,
                a.timeout_ms / 1000
            )
        }
    }
}

/// A byte count for people: `512 B`, `1.5 kB`, `3.2 MB`.
fn size(bytes: u64) -> String {
    match bytes {
        0..1000 => format!("{bytes} B"),
        1000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_137_445_123);
        assert_eq!(rfc3339(t), "2026-12-01T15:04:05.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn lines_round_trip_and_appends_do_not_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let log = path(dir.path());
        let egress = Event::now(What::Egress(Egress {
            host: "example.com".into(),
            port: 443,
            method: "CONNECT".into(),
            decision: "deny".into(),
            reason: Some("not on the allow list".into()),
            ..Egress::default()
        }));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| (0..50).for_each(|_| append(&log, &egress)));
            }
        });
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 400);
        for line in text.lines() {
            assert_eq!(serde_json::from_str::<Event>(line).unwrap(), egress);
        }
        assert!(text.lines().next().unwrap().contains(r#""event":"egress""#));
        assert!(human(&egress).contains("egress deny  CONNECT example.com:443  not on the allow list"), "{}", human(&egress));
    }
}
