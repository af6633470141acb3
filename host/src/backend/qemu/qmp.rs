//! Just enough QMP (QEMU's JSON control protocol) for what hutch asks of a
//! running VM: stop it at once (`quit`) or by pressing its ACPI power button
//! (`system_powerdown`), and, to fork it, pause it (`stop`/`cont`) and put a
//! new overlay on its disk (`blockdev-snapshot-sync`).
//!
//! One [`Session`] is one connection: QEMU's greeting, `qmp_capabilities`,
//! then commands, each answered by `return` or `error`; asynchronous events
//! QEMU sends in between are skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// How long QEMU may take to answer one command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest line hutch reads from QEMU (answers are a few hundred bytes).
const MAX_LINE: u64 = 1 << 20;

/// Why a QMP command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// QEMU does not answer on the socket (not running, or hung).
    #[error("QEMU's control socket: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU refused the command.
    #[error("QEMU refused {command}: {desc} ({class})")]
    Refused {
        /// The command.
        command: String,
        /// QEMU's error class (`GenericError`, …).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// QEMU said something that is not QMP.
    #[error("QEMU's control socket: {0}")]
    Protocol(String),
}

/// Asks QEMU to quit at once. Errors mean QEMU is not answering on `socket`.
pub fn quit(socket: &Path) -> Result<(), QmpError> {
    Session::open(socket)?.execute("quit", None).map(drop)
}

/// Presses the guest's ACPI power button; the guest's init decides what to do
/// (hutch's powers off cleanly, and QEMU exits).
pub fn system_powerdown(socket: &Path) -> Result<(), QmpError> {
    Session::open(socket)?.execute("system_powerdown", None).map(drop)
}

/// One QMP connection, past its handshake.
pub struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Session {
    /// Connects and negotiates capabilities.
    pub fn open(socket: &Path) -> Result<Session, QmpError> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let mut session = Session { reader: BufReader::new(stream.try_clone()?), writer: stream };
        let greeting = session.read()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("no greeting: {greeting}")));
        }
        session.execute("qmp_capabilities", None)?;
        Ok(session)
    }

    /// Runs `command` with `arguments` and returns what it returned.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut message = json!({ "execute": command });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        self.writer.write_all(format!("{message}\n").as_bytes())?;
        loop {
            let answer = self.read()?;
            if let Some(value) = answer.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = answer.get("error") {
                let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("?").to_owned();
                return Err(QmpError::Refused { command: command.to_owned(), class: text("class"), desc: text("desc") });
            }
            // An event (STOP, RESUME, …): not the answer.
        }
    }

    fn read(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let read = (&mut self.reader).take(MAX_LINE).read_line(&mut line)?;
        if read == 0 {
            return Err(QmpError::Protocol("QEMU closed the connection".into()));
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e}: {}", line.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A QMP server that greets, answers `qmp_capabilities`, then answers
    /// each command with the next of `answers` (after an event).
    fn serve(answers: Vec<&'static str>) -> (tempfile::TempDir, std::path::PathBuf, std::thread::JoinHandle<Vec<String>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            writer.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").unwrap();
            let mut got = Vec::new();
            for answer in std::iter::once("{\"return\": {}}").chain(answers) {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                got.push(line.trim().to_owned());
                writer.write_all(b"{\"event\": \"STOP\", \"data\": {}}\n").unwrap();
                writer.write_all(format!("{answer}\n").as_bytes()).unwrap();
            }
            got
        });
        (dir, path, server)
    }

    #[test]
    fn commands_get_their_answer_past_events_and_refusals_are_typed() {
        let (_dir, path, server) =
            serve(vec![r#"{"return": {"status": "paused"}}"#, r#"{"error": {"class": "GenericError", "desc": "no such device"}}"#]);
        let mut session = Session::open(&path).unwrap();
        assert_eq!(session.execute("query-status", None).unwrap()["status"], "paused");
        let err = session.execute("blockdev-snapshot-sync", Some(json!({ "device": "disk9" }))).unwrap_err();
        assert!(matches!(&err, QmpError::Refused { desc, .. } if desc == "no such device"), "{err}");
        drop(session);
        let got = server.join().unwrap();
        assert_eq!(got[0], r#"{"execute":"qmp_capabilities"}"#);
        assert_eq!(got[2], r#"{"arguments":{"device":"disk9"},"execute":"blockdev-snapshot-sync"}"#);
    }

    #[test]
    fn a_socket_nobody_serves_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(quit(&dir.path().join("none.sock")), Err(QmpError::Io(_))));
    }
}
