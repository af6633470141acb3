//! `cargo xtask dist`: what to install in a guest image so hutch can reach it.
//!
//! Writes into `target/dist/`:
//! - `hutch-agent-x86_64-linux`: static (crt-static), runs on any x86_64 Linux
//!   guest; `hutch-agent-aarch64-linux` too when the Rust target
//!   `aarch64-unknown-linux-gnu` is installed (Apple silicon guests), else
//!   says it was skipped;
//! - `hutch-agent.service`: systemd unit for Linux guests (vsock 8080 for
//!   Tart and QEMU, `/run/hutch/agent.sock` for Lima's forwarded socket);
//! - `dev.hutch.agent.plist`: launchd daemon for macOS guests (Tart).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::build_static_agent;
use crate::workspace::{Result, root};

/// Where the agent is installed in guests.
const INSTALLED_AGENT: &str = "/usr/local/bin/hutch-agent";

/// The systemd unit for Linux guests.
const SYSTEMD_UNIT: &str = "\
[Unit]
Description=hutch guest agent: runs commands for the hutch CLI over vsock and a Unix socket
Documentation=https://example.invalid/hutch

[Service]
ExecStart=/usr/local/bin/hutch-agent --listen vsock://any:8080 --listen unix:///run/hutch/agent.sock
# /run/hutch, owned by the service's user (see `User=` for Lima in docs/backends.md).
RuntimeDirectory=hutch
# root's HOME, USER and SHELL for the commands it runs (a drop-in may set another User=).
User=root
# The agent's ready line also reaches the console, where hutch's QEMU backend waits for it.
StandardOutput=journal+console
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
";

/// The launchd daemon for macOS guests (`/Library/LaunchDaemons/`).
const LAUNCHD_PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>dev.hutch.agent</string>
  <key>ProgramArguments</key>
  <array>
    <string>/usr/local/bin/hutch-agent</string>
    <string>--listen</string>
    <string>vsock://any:8080</string>
  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <true/>
  <key>StandardErrorPath</key>
  <string>/var/log/hutch-agent.log</string>
</dict>
</plist>
"#;

/// Builds the agents and writes the service files; returns the exit code.
pub fn run() -> Result<u8> {
    let out = root().join("target").join("dist");
    std::fs::create_dir_all(&out)?;
    let mut made = Vec::new();
    made.push(copy_agent(&build_static_agent("x86_64-unknown-linux-gnu")?, &out, "x86_64")?);
    const ARM: &str = "aarch64-unknown-linux-gnu";
    if installed_targets()?.iter().any(|t| t == ARM) {
        made.push(copy_agent(&build_static_agent(ARM)?, &out, "aarch64")?);
    } else {
        eprintln!(
            "xtask: skipped the aarch64 Linux agent: the Rust target {ARM} is not installed (`rustup target add {ARM}`, plus a linker for it)"
        );
    }
    for (name, text) in [("hutch-agent.service", SYSTEMD_UNIT), ("dev.hutch.agent.plist", LAUNCHD_PLIST)] {
        std::fs::write(out.join(name), text)?;
        made.push(out.join(name));
    }
    for path in &made {
        eprintln!("xtask: wrote {}", path.display());
    }
    eprintln!("xtask: install the agent in a guest as {INSTALLED_AGENT}, with the service file for its OS (see docs/backends.md)");
    Ok(0)
}

fn copy_agent(built: &Path, out: &Path, arch: &str) -> Result<PathBuf> {
    let dest = out.join(format!("hutch-agent-{arch}-linux"));
    std::fs::copy(built, &dest)?;
    Ok(dest)
}

/// `rustup target list --installed`; without rustup, only the host's target.
fn installed_targets() -> Result<Vec<String>> {
    match Command::new("rustup").args(["target", "list", "--installed"]).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()),
        _ => Ok(vec![crate::image::host_triple()?]),
    }
}
