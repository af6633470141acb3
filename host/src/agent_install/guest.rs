//! The guest's platform (from `uname -sm`) and where the agent's pieces go
//! on it.

use std::fmt;

use super::error::InstallError;

/// The guest's operating system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Os {
    /// Linux: a systemd unit.
    Linux,
    /// macOS: a launchd daemon.
    MacOs,
}

/// The guest's CPU architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86_64 / amd64.
    X86_64,
    /// aarch64 / arm64.
    Aarch64,
}

/// What the agent binary must be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Operating system.
    pub os: Os,
    /// CPU architecture.
    pub arch: Arch,
}

impl Platform {
    /// Parses `uname -sm` output, e.g. `Linux x86_64` or `Darwin arm64`.
    pub fn from_uname(uname: &str) -> Result<Platform, InstallError> {
        let unsupported = || InstallError::UnsupportedGuest(uname.trim().to_owned());
        let mut words = uname.split_whitespace();
        let os = match words.next() {
            Some("Linux") => Os::Linux,
            Some("Darwin") => Os::MacOs,
            _ => return Err(unsupported()),
        };
        let arch = match words.next() {
            Some("x86_64" | "amd64") => Arch::X86_64,
            Some("aarch64" | "arm64") => Arch::Aarch64,
            _ => return Err(unsupported()),
        };
        Ok(Platform { os, arch })
    }

    /// `linux-x86_64`, `darwin-aarch64`: the suffix of dist file names.
    pub fn slug(&self) -> String {
        format!("{}-{}", self.os.name(), self.arch.name())
    }

    /// The Rust target triples whose builds run here (first: the preferred one).
    pub fn triples(&self) -> &'static [&'static str] {
        match (self.os, self.arch) {
            (Os::Linux, Arch::X86_64) => &["x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"],
            (Os::Linux, Arch::Aarch64) => &["aarch64-unknown-linux-musl", "aarch64-unknown-linux-gnu"],
            (Os::MacOs, Arch::X86_64) => &["x86_64-apple-darwin"],
            (Os::MacOs, Arch::Aarch64) => &["aarch64-apple-darwin"],
        }
    }
}

impl Os {
    /// Lower-case name as in dist file names.
    pub fn name(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::MacOs => "darwin",
        }
    }
}

impl Arch {
    /// Name as in dist file names.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os.name(), self.arch.name())
    }
}

/// The systemd unit's file name (Linux guests).
pub const SYSTEMD_UNIT: &str = "hutch-agent.service";

/// The launchd job's label (and plist file name without `.plist`; macOS guests).
pub const LAUNCHD_LABEL: &str = "dev.hutch.agent";

/// Where the agent's files go on the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The agent binary.
    pub binary: String,
    /// The Unix socket the agent listens on (besides vsock), which the install checks.
    pub socket: String,
    /// The service file (systemd unit or launchd plist).
    pub service_file: String,
    /// The agent's log when it is started without a service manager (and on macOS).
    pub log: String,
    /// The pid file when it is started without a service manager.
    pub pid_file: String,
}

impl Layout {
    /// The standard places, or everything under `prefix` (tests, unprivileged installs).
    pub fn new(os: Os, prefix: Option<&str>) -> Layout {
        match prefix {
            None => {
                let (socket, service_file) = match os {
                    Os::Linux => ("/run/hutch/agent.sock", format!("/etc/systemd/system/{}", SYSTEMD_UNIT)),
                    Os::MacOs => ("/var/run/hutch/agent.sock", format!("/Library/LaunchDaemons/{}.plist", LAUNCHD_LABEL)),
                };
                Layout {
                    binary: "/usr/local/bin/hutch-agent".into(),
                    socket: socket.into(),
                    service_file,
                    log: "/var/log/hutch-agent.log".into(),
                    pid_file: "/run/hutch/agent.pid".into(),
                }
            }
            Some(prefix) => {
                let prefix = prefix.trim_end_matches('/');
                let service_file = match os {
                    Os::Linux => format!("{prefix}/etc/systemd/system/{}", SYSTEMD_UNIT),
                    Os::MacOs => format!("{prefix}/Library/LaunchDaemons/{}.plist", LAUNCHD_LABEL),
                };
                Layout {
                    binary: format!("{prefix}/bin/hutch-agent"),
                    socket: format!("{prefix}/agent.sock"),
                    service_file,
                    log: format!("{prefix}/agent.log"),
                    pid_file: format!("{prefix}/agent.pid"),
                }
            }
        }
    }
}

/// Quotes `s` for a POSIX shell (single quotes; `'` becomes `'\''`).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname() {
        assert_eq!(Platform::from_uname("Linux x86_64\n").expect("linux").slug(), "linux-x86_64");
        assert_eq!(Platform::from_uname("Darwin arm64").expect("mac").slug(), "darwin-aarch64");
        assert!(matches!(Platform::from_uname("FreeBSD amd64"), Err(InstallError::UnsupportedGuest(_))));
        assert!(matches!(Platform::from_uname("Linux riscv64"), Err(InstallError::UnsupportedGuest(_))));
        assert!(Platform::from_uname("").is_err());
    }

    #[test]
    fn layouts() {
        let std = Layout::new(Os::Linux, None);
        assert_eq!(std.binary, "/usr/local/bin/hutch-agent");
        assert_eq!(std.service_file, "/etc/systemd/system/hutch-agent.service");
        let tmp = Layout::new(Os::Linux, Some("/tmp/x/"));
        assert_eq!(tmp.binary, "/tmp/x/bin/hutch-agent");
        assert_eq!(tmp.socket, "/tmp/x/agent.sock");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
