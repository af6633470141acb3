//! How an exec ended, as an exit code (the exit-code table in the README) and as JSON.

use std::io::Write;

use hutch_proto::v1::{DetachReason, Detached, Exited, OutputDropped, StartError, StartFailed, exited};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::Captured;
use crate::exit;
use crate::untrusted::text;

/// Turns an exec's result into hutch's exit code, printing what the user
/// should see (and the JSON report when asked; scripts that asked for JSON
/// get it even when hutch fails, with `exit_code` of the error).
pub fn report<E: std::fmt::Display>(result: Result<super::Finished, E>, json: bool, exit_code: impl Fn(&E) -> u8) -> Result<u8, E> {
    match result {
        Ok(finished) => {
            let code = finished.outcome.exit_code();
            if let Outcome::Detached(detached) = &finished.outcome
                && detached.reason == DetachReason::DetachAtStart as i32
                && !json
            {
                // `--detach`: the tag, for `hutch attach` and for scripts.
                println!("{}", crate::sessions::printable(&detached.session));
            }
            if let Some(message) = finished.outcome.message() {
                eprintln!("hutch: {message}");
            }
            if json {
                print_json(&finished.outcome.to_json(finished.captured));
            }
            Ok(code)
        }
        Err(error) => {
            if json {
                let message = text::escaped(&error.to_string()).into_owned();
                print_json(&json!({ "exit_code": exit_code(&error), "error": { "kind": "HUTCH", "message": message } }));
            }
            Err(error)
        }
    }
}

/// Writes `report` and a newline to stdout as it serializes (the captured
/// output may be megabytes: no second copy of it is made).
fn print_json(report: &Value) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if serde_json::to_writer(&mut out, report).is_ok() {
        let _ = out.write_all(b"\n").and_then(|()| out.flush());
    }
}

/// How an exec ended, from hutch's point of view.
#[derive(Debug)]
pub enum Outcome {
    /// The process ran and ended.
    Exited(Exited),
    /// The process never started.
    StartFailed(StartFailed),
    /// Local stdout was closed under hutch; the remote group is killed, and
    /// hutch reports what a local process would: death by SIGPIPE.
    BrokenPipe,
    /// The user pressed Ctrl-C repeatedly; hutch stopped waiting and the remote
    /// group is killed.
    Abandoned,
    /// Sessions: the process runs on without hutch (`--detach`, the detach
    /// keys, a SIGHUP, another client taking over, the end of `logs`).
    Detached(Detached),
}

impl Outcome {
    /// The exit code hutch leaves with.
    pub fn exit_code(&self) -> u8 {
        match self {
            // Checked when it arrived (`Drive::run`); an unchecked one is hutch's failure.
            Outcome::Exited(exited) => exit::of_exited(exited).unwrap_or(exit::HUTCH_FAILED),
            Outcome::StartFailed(f) => match StartError::try_from(f.error) {
                Ok(StartError::NotFound) => exit::NOT_FOUND,
                Ok(StartError::NotExecutable) => exit::NOT_EXECUTABLE,
                _ => exit::HUTCH_FAILED,
            },
            Outcome::BrokenPipe => exit::signaled(Signal::SIGPIPE as u32),
            Outcome::Abandoned => exit::signaled(Signal::SIGINT as u32),
            Outcome::Detached(_) => 0,
        }
    }

    /// The message to print on stderr, if this outcome deserves one.
    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::StartFailed(f) => Some(text::shown(&f.message)),
            Outcome::Exited(e) if e.timed_out => Some(format!("timed out after {} ms; the process group was killed", e.duration_ms)),
            Outcome::Abandoned => Some("interrupted; the remote process group was killed".into()),
            Outcome::Detached(d) => {
                let name = if d.session.is_empty() { "the session".to_owned() } else { crate::sessions::printable(&d.session) };
                let back =
                    if d.session.is_empty() { "`hutch ps` lists sessions".to_owned() } else { format!("`hutch attach {name}` to return") };
                match DetachReason::try_from(d.reason) {
                    Ok(DetachReason::DetachRequested) => Some(format!("detached; {name} runs on ({back})")),
                    Ok(DetachReason::DetachTakenOver) => {
                        Some(format!("another client took {name} over (`hutch attach --force`); it runs on ({back})"))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The `--json` report.
    pub fn to_json(&self, captured: Option<Captured>) -> Value {
        let mut report = json!({
            "exit_code": self.exit_code(),
            "signal": Value::Null,
            "timed_out": false,
            "duration_ms": Value::Null,
        });
        match self {
            Outcome::Exited(e) => {
                if let Some(exited::Status::Signal(number)) = e.status {
                    report["signal"] = json!(if e.signal_name.is_empty() { number.to_string() } else { format!("SIG{}", e.signal_name) });
                    report["core_dumped"] = json!(e.core_dumped);
                }
                report["timed_out"] = json!(e.timed_out);
                report["duration_ms"] = json!(e.duration_ms);
                report["output_cut"] = json!(e.output_cut);
            }
            Outcome::StartFailed(f) => {
                let kind = StartError::try_from(f.error).map(|k| k.as_str_name()).unwrap_or("START_ERROR_UNSPECIFIED");
                report["error"] = json!({ "kind": kind, "message": text::shown(&f.message) });
            }
            Outcome::BrokenPipe | Outcome::Abandoned => {
                report["error"] = json!({ "kind": "ABANDONED", "message": self.message().unwrap_or_default() });
            }
            Outcome::Detached(d) => {
                report["session"] = json!(text::shown(&d.session));
            }
        }
        if let Some(captured) = captured {
            report["stdout_cut_bytes"] = json!(captured.stdout_cut);
            report["stderr_cut_bytes"] = json!(captured.stderr_cut);
            put_bytes(&mut report, "stdout", captured.stdout);
            put_bytes(&mut report, "stderr", captured.stderr);
        }
        report
    }
}

/// The line hutch writes (on stderr, in order with the output) where a
/// session's output has a gap. `raw`: the local terminal is raw, so the line
/// ends with CR LF.
pub fn dropped_notice(dropped: &OutputDropped, raw: bool) -> String {
    let (out, err) = (dropped.stdout_bytes, dropped.stderr_bytes);
    let what = match (out, err) {
        (0, err) => format!("{err} bytes of stderr"),
        (out, 0) => format!("{out} bytes of output"),
        (out, err) => format!("{out} bytes of stdout and {err} of stderr"),
    };
    let eol = if raw { "\r\n" } else { "\n" };
    format!("hutch: [{what} dropped here: the session's buffer keeps only its newest output]{eol}")
}

/// Text as a string; anything that is not UTF-8 as base64 under `<key>_base64`,
/// so no byte is lost.
fn put_bytes(report: &mut Value, key: &str, bytes: Vec<u8>) {
    match String::from_utf8(bytes) {
        Ok(text) => report[key] = json!(text),
        Err(e) => {
            use base64::Engine;
            report[format!("{key}_base64")] = json!(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(status: exited::Status, name: &str, timed_out: bool) -> Outcome {
        Outcome::Exited(Exited { status: Some(status), signal_name: name.into(), timed_out, ..Default::default() })
    }

    #[test]
    fn maps_outcomes_to_the_design_table() {
        assert_eq!(exited(exited::Status::Code(0), "", false).exit_code(), 0);
        assert_eq!(exited(exited::Status::Code(7), "", false).exit_code(), 7);
        assert_eq!(exited(exited::Status::Signal(15), "TERM", false).exit_code(), 143);
        assert_eq!(exited(exited::Status::Signal(9), "KILL", true).exit_code(), 124);
        // A guest numbering (macOS SIGUSR1 = 30) is translated by name.
        assert_eq!(exited(exited::Status::Signal(30), "USR1", false).exit_code(), 128 + Signal::SIGUSR1 as u8);
        let failed = |kind: StartError| Outcome::StartFailed(StartFailed { error: kind as i32, message: String::new() });
        assert_eq!(failed(StartError::NotFound).exit_code(), 127);
        assert_eq!(failed(StartError::NotExecutable).exit_code(), 126);
        assert_eq!(failed(StartError::BadCwd).exit_code(), 125);
        assert_eq!(Outcome::BrokenPipe.exit_code(), 141);
    }

    #[test]
    fn json_keeps_binary_output() {
        let captured = Captured { stdout: b"hi\n".to_vec(), stderr: vec![0xff, 0x00], stdout_cut: 5, stderr_cut: 0 };
        let report = exited(exited::Status::Code(0), "", false).to_json(Some(captured));
        assert_eq!(report["stdout"], "hi\n");
        assert_eq!(report["stderr_base64"], "/wA=");
        assert_eq!(report["exit_code"], 0);
        assert_eq!((report["stdout_cut_bytes"].as_u64(), report["stderr_cut_bytes"].as_u64()), (Some(5), Some(0)));
    }

    #[test]
    fn ends_outside_the_protocol_are_hutchs_failure() {
        assert_eq!(exited(exited::Status::Code(256), "", false).exit_code(), exit::HUTCH_FAILED);
        assert_eq!(exited(exited::Status::Code(-1), "", false).exit_code(), exit::HUTCH_FAILED);
        assert_eq!(exited(exited::Status::Signal(0), "", false).exit_code(), exit::HUTCH_FAILED);
        assert_eq!(exited(exited::Status::Signal(9), "KILL\n", false).exit_code(), exit::HUTCH_FAILED);
        assert_eq!(Outcome::Exited(Exited::default()).exit_code(), exit::HUTCH_FAILED);
    }
}
