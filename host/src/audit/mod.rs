//! The audit log: one JSON line per egress decision, per exec, per MCP
//! tool call (`hutch mcp`), per hand-back of the guest's commits
//! (`crate::git`), per change of a running VM's network policy and per
//! question of `mode = "ask"`, read by `hutch audit`, kept per project so
//! that the record of a removed VM (a
//! `run --rm` above all) stays.
//!
//! Writers append through a [`Log`], made for a VM ([`Log::for_vm`]):
//! `log.append(What::Exec(…))`. The VM's network process writes egress
//! events, every `hutch` command that runs something writes exec events;
//! new kinds of entries (a policy change, a git guard's refusal) are new
//! variants of [`What`], each a struct of plain fields. The writer does the
//! rest, so no caller can get it wrong:
//!
//! - every line is one `write(2)` to a file opened with `O_APPEND`, so
//!   lines from concurrent writers never interleave;
//! - every field is stored as a JSON string, so a newline or an escape
//!   sequence the guest put into a host name, a URL path or a message is
//!   an escape inside a string and can never start a line of its own; the
//!   characters JSON leaves as they are (C1 controls, bidirectional marks)
//!   are `\u` escapes too ([`text::json_safe`]), and each field is cut at
//!   [`limits::AUDIT_FIELD_BYTES`];
//! - the file is rotated past [`limits::AUDIT_FILE_BYTES`] and at most
//!   [`limits::AUDIT_FILES`] are kept ([`store`]), so a guest that floods
//!   requests cannot fill the host's disk;
//! - the files are the project's (`audit/<project>.jsonl` in the state
//!   folder), not the VM's folder's, so removing the VM leaves them, and
//!   each line names its VM.
//!
//! Secret values never reach it: egress events carry what the guest sent
//! (placeholders) and the names of secrets added, and exec events are
//! redacted by the caller. `hutch audit` shows the lines with every field
//! escaped ([`human`]).

pub mod human;
pub mod store;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::state::{StateDir, VmName, VmRecord};
use crate::untrusted::{limits, text};

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The VM it happened in (empty in lines written before logs were kept
    /// per project).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vm: String,
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
    /// An MCP client called a tool of `hutch mcp`.
    Tool(Tool),
    /// The guest's commits were taken into a host repository (or refused),
    /// or a repository the guest made was quarantined.
    Git(crate::git::report::RepoReport),
    /// The running VM's policy changed (`hutch allow`/`deny`, an answer, `hutch up`).
    Policy(PolicyChange),
    /// A request waits for a person's answer (`mode = "ask"`).
    Ask(Asked),
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

/// One tool call of an MCP client (`hutch mcp`): what it acted on and how
/// it ended. Command lines have secret values replaced by `[secret NAME]`;
/// contents (a file's bytes, stdin) are never logged, only their sizes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// The tool (`exec`, `read_file`, `session_start`…).
    pub tool: String,
    /// The client, as it named itself (`claude-code 2.1.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The command it ran (`exec`, `session_start`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// The guest path it acted on (file and search tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The working directory in the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The session it acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// What else it was asked (a byte range, a pattern, a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A command's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended a command (`SIGTERM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Why the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The client cancelled it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// Wall time of the call.
    pub duration_ms: u64,
}

/// One change of a running VM's network policy. Written by the host's
/// network process for a host user's command: its fields come from the
/// host, but are cut and escaped as every field is.
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

/// A question of `mode = "ask"`: its request's egress line follows once it
/// is answered or times out. The host and method are the guest's.
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

impl What {
    /// Every text field cut at [`limits::AUDIT_FIELD_BYTES`] (the guest
    /// chooses host names, paths and messages).
    fn bounded(mut self) -> What {
        let cut = |field: &mut String| {
            if field.len() > limits::AUDIT_FIELD_BYTES.max_usize() {
                *field = text::truncated(field, limits::AUDIT_FIELD_BYTES.max_usize());
            }
        };
        match &mut self {
            What::Egress(e) => {
                for field in [&mut e.host, &mut e.method, &mut e.decision]
                    .into_iter()
                    .chain([&mut e.path, &mut e.rule, &mut e.reason, &mut e.addr].into_iter().flatten())
                {
                    cut(field);
                }
                e.secrets.iter_mut().for_each(cut);
            }
            What::Exec(x) => {
                for field in [&mut x.cwd, &mut x.tag].into_iter().chain([&mut x.signal, &mut x.error].into_iter().flatten()) {
                    cut(field);
                }
                x.argv.iter_mut().for_each(cut);
            }
            What::Tool(t) => {
                for field in [&mut t.tool].into_iter().chain(
                    [&mut t.client, &mut t.path, &mut t.cwd, &mut t.session, &mut t.detail, &mut t.signal, &mut t.error]
                        .into_iter()
                        .flatten(),
                ) {
                    cut(field);
                }
                t.argv.iter_mut().for_each(cut);
            }
            What::Git(report) => {
                for arrived in &mut report.arrived {
                    cut(&mut arrived.name);
                }
                for refused in &mut report.refused {
                    for field in [&mut refused.name, &mut refused.why].into_iter().chain(refused.kept.as_mut()) {
                        cut(field);
                    }
                }
                report.notes.iter_mut().for_each(cut);
            }
            What::Policy(p) => {
                for field in [&mut p.action, &mut p.pattern, &mut p.by].into_iter().chain(p.saved.as_mut()) {
                    cut(field);
                }
                p.undone.iter_mut().for_each(cut);
            }
            What::Ask(a) => {
                for field in [&mut a.host, &mut a.method] {
                    cut(field);
                }
            }
        }
        self
    }
}

/// Where one VM's events go: its project's log, each line naming the VM.
#[derive(Clone, Debug)]
pub struct Log {
    file: PathBuf,
    vm: String,
}

impl Log {
    /// The log of `record`'s VM (see [`store::project_file`]).
    pub fn for_vm(state: &StateDir, record: &VmRecord) -> Log {
        Log { file: store::project_file(state, record), vm: record.name.to_string() }
    }

    /// The log of the VM whose state folder is `vm_dir` (`<state>/vms/NAME`),
    /// for writers that know only that folder (the git guard's daemons);
    /// `None` when the folder holds no VM record.
    pub fn for_vm_dir(vm_dir: &std::path::Path) -> Option<Log> {
        let name = VmName::new(vm_dir.file_name()?.to_str()?).ok()?;
        let state = StateDir::at(vm_dir.parent()?.parent()?);
        let record = state.load(&name).ok()?;
        Some(Log::for_vm(&state, &record))
    }

    /// A log in `file` for VM `vm` (tests, tools).
    pub fn at(file: PathBuf, vm: &VmName) -> Log {
        Log { file, vm: vm.to_string() }
    }

    /// The current file.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// Appends `what`, happening now, as one line; failures are only logged
    /// (auditing never breaks the command or the connection it records).
    pub fn append(&self, what: What) {
        let event = Event { time: rfc3339(SystemTime::now()), vm: self.vm.clone(), what: what.bounded() };
        if let Err(e) = store::append(&self.file, &event) {
            tracing::warn!("cannot write the audit log {}: {e}", self.file.display());
        }
    }
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

/// An egress refusal as the tests of the log and its view use it.
#[cfg(test)]
pub(crate) fn example_refusal() -> What {
    What::Egress(Egress {
        host: "example.com".into(),
        port: 443,
        method: "CONNECT".into(),
        decision: "deny".into(),
        reason: Some("not on the allow list".into()),
        ..Egress::default()
    })
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
    fn lines_round_trip_name_their_vm_and_appends_do_not_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::at(dir.path().join("p.jsonl"), &VmName::new("web").unwrap());
        let egress = example_refusal();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| (0..50).for_each(|_| log.append(egress.clone())));
            }
        });
        let text = std::fs::read_to_string(log.file()).unwrap();
        assert_eq!(text.lines().count(), 400);
        for line in text.lines() {
            let event = serde_json::from_str::<Event>(line).unwrap();
            assert_eq!((event.vm.as_str(), &event.what), ("web", &egress));
        }
        assert!(text.lines().next().unwrap().contains(r#""event":"egress""#));
    }

    #[test]
    fn guest_fields_cannot_forge_a_line_or_grow_one_without_bound() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::at(dir.path().join("p.jsonl"), &VmName::new("web").unwrap());
        let forged = "x\n{\"time\":\"2026-12-01T16:04:52.301Z\",\"event\":\"exec\",\"argv\":[\"npm\"],\"exit_code\":0}\u{85}\u{202e}";
        log.append(What::Egress(Egress { host: forged.into(), path: Some("/".repeat(1 << 20)), ..Egress::default() }));
        let text = std::fs::read_to_string(log.file()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.trim_end().chars().any(text::is_unsafe), "{text:?}");
        assert!(text.len() < 3 * limits::AUDIT_FIELD_BYTES.max_usize(), "{}", text.len());
        let event: Event = serde_json::from_str(text.trim_end()).unwrap();
        let What::Egress(egress) = event.what else { panic!() };
        assert_eq!(egress.host, forged, "the value is kept, escaped only in the file");
    }
}
