//! Just enough QMP (QEMU's JSON control protocol) to stop a VM: at once
//! (`quit`), or by pressing its ACPI power button (`system_powerdown`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Asks QEMU to quit at once. Errors mean QEMU is not answering on `socket`.
pub fn quit(socket: &Path) -> std::io::Result<()> {
    execute(socket, "quit")
}

/// Presses the guest's ACPI power button; the guest's init decides what to do
/// (hutch's powers off cleanly, and QEMU exits).
pub fn system_powerdown(socket: &Path) -> std::io::Result<()> {
    execute(socket, "system_powerdown")
}

fn execute(socket: &Path, name: &str) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?; // greeting
    let command = format!(r#"{{"execute":"{name}"}}"#);
    for command in [r#"{"execute":"qmp_capabilities"}"#, command.as_str()] {
        writer.write_all(command.as_bytes())?;
        writer.write_all(b"\n")?;
        line.clear();
        reader.read_line(&mut line)?;
    }
    Ok(())
}
