//! The service files that keep the agent running in a guest: a systemd unit
//! for Linux, a launchd daemon plist for macOS. `cargo xtask dist` ships the
//! same content; generating it here lets `hutch agent install` work without
//! the dist tree.
//!
//! The agent listens on vsock port 8080 (what Tart's control socket and
//! QEMU's vsock reach) and on a Unix socket (Lima's port forward, and the
//! install's own check through SSH). It creates the socket's folder itself.

use super::guest::Layout;
pub use super::guest::{LAUNCHD_LABEL, SYSTEMD_UNIT};

/// The guest vsock port the agent listens on.
pub const VSOCK_PORT: u32 = 8080;

/// The agent's command line in a service: vsock plus the layout's Unix socket.
pub fn agent_args(layout: &Layout) -> Vec<String> {
    vec!["--listen".into(), format!("vsock://any:{VSOCK_PORT}"), "--listen".into(), format!("unix://{}", layout.socket)]
}

/// The systemd unit for Linux guests.
pub fn systemd_unit(layout: &Layout) -> String {
    format!(
        "[Unit]\n\
         Description=hutch guest agent (runs commands for the hutch CLI)\n\
         After=network.target\n\
         \n\
         [Service]\n\
         ExecStart={} {}\n\
         # root's HOME, USER and SHELL for the commands it runs (a drop-in may set another User=).\n\
         User=root\n\
         # The \"ready on …\" line also reaches the console, where hutch's QEMU backend waits for it.\n\
         StandardOutput=journal+console\n\
         Restart=always\n\
         RestartSec=1\n\
         KillMode=process\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        layout.binary,
        agent_args(layout).join(" ")
    )
}

/// The launchd daemon plist for macOS guests.
pub fn launchd_plist(layout: &Layout) -> String {
    let mut args = format!("    <string>{}</string>\n", xml_escape(&layout.binary));
    for arg in agent_args(layout) {
        args.push_str(&format!("    <string>{}</string>\n", xml_escape(&arg)));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20 <key>Label</key>\n\
         \x20 <string>{LAUNCHD_LABEL}</string>\n\
         \x20 <key>ProgramArguments</key>\n\
         \x20 <array>\n\
         {args}\
         \x20 </array>\n\
         \x20 <key>RunAtLoad</key>\n\
         \x20 <true/>\n\
         \x20 <key>KeepAlive</key>\n\
         \x20 <true/>\n\
         \x20 <key>StandardOutPath</key>\n\
         \x20 <string>{log}</string>\n\
         \x20 <key>StandardErrorPath</key>\n\
         \x20 <string>{log}</string>\n\
         </dict>\n\
         </plist>\n",
        log = xml_escape(&layout.log)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::super::guest::Os;
    use super::*;

    #[test]
    fn unit_runs_the_agent_on_vsock_and_the_socket() {
        let unit = systemd_unit(&Layout::new(Os::Linux, None));
        assert!(
            unit.contains("ExecStart=/usr/local/bin/hutch-agent --listen vsock://any:8080 --listen unix:///run/hutch/agent.sock\n"),
            "{unit}"
        );
        assert!(unit.contains("Restart=always\n"));
        assert!(unit.contains("StandardOutput=journal+console\n") && unit.contains("User=root\n"), "{unit}");
        assert!(unit.contains("WantedBy=multi-user.target"));
    }

    #[test]
    fn plist_lists_each_argument() {
        let plist = launchd_plist(&Layout::new(Os::MacOs, None));
        assert!(
            plist.contains(
                "<string>/usr/local/bin/hutch-agent</string>\n    <string>--listen</string>\n    <string>vsock://any:8080</string>"
            ),
            "{plist}"
        );
        assert!(plist.contains("<string>unix:///var/run/hutch/agent.sock</string>"));
        assert!(plist.contains("<key>KeepAlive</key>\n  <true/>"));
    }
}
