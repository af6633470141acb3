//! How an exec ended, as an exit code (the exit-code table in the README) and as JSON.

use hutch_proto::v1::{DetachReason, Detached, Exited, OutputDropped, StartError, StartFailed, exited};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::exit;

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
                println!("{}", finished.outcome.to_json(finished.captured));
            }
            Ok(code)
        }
        Err(error) => {
            if json {
                println!("{}", json!({ "exit_code": exit_code(&error), "error": { "kind": "HUTCH", "message": error.to_string() } }));
            }
            Err(error)
        }
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
            Outcome::Exited(exited) => exit::of_exited(exited),
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
            Outcome::StartFailed(f) => Some(f.message.clone()),
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
    pub fn to_json(&self, captured: Option<(Vec<u8>, Vec<u8>)>) -> Value {
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
                report["error"] = json!({ "kind": kind, "message": f.message });
            }
            Outcome::BrokenPipe | Outcome::Abandoned => {
                report["error"] = json!({ "kind": "ABANDONED", "message": self.message().unwrap_or_default() });
            }
            Outcome::Detached(d) => {
                report["session"] = json!(d.session);
            }
        }
        if let Some((stdout, stderr)) = captured {
            put_bytes(&mut report, "stdout", stdout);
            put_bytes(&mut report, "stderr", stderr);
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
        let report = exited(exited::Status::Code(0), "", false).to_json(Some((b"hi\n".to_vec(), vec![0xff, 0x00])));
        assert_eq!(report["stdout"], "hi\n");
        assert_eq!(report["stderr_base64"], "/wA=");
        assert_eq!(report["exit_code"], 0);
    }
}
