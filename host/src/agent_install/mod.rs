//! Installing `hutch-agent` into a guest that lacks it, over one SSH
//! connection: the one place hutch uses SSH.
//!
//! The steps, each a small remote command on the same connection:
//!
//! 1. `uname -sm` says the guest's platform; the matching agent binary is
//!    picked on the host ([`binary`]) and its header checked.
//! 2. `id -u`: root installs directly; another user needs `sudo -n` for
//!    system locations (a `--prefix` the user owns needs nothing).
//! 3. The binary is streamed to a temporary file and renamed into place, then
//!    run with `--version` on the guest: it starts there.
//! 4. Either the service file ([`service`]: systemd unit / launchd plist) is
//!    written, enabled and (re)started, or, with no service manager (tests,
//!    containers), the agent is started in the background with `nohup`.
//! 5. The agent must answer a gRPC `Info` on its Unix socket, reached through
//!    the same SSH connection ([`verify`]).
//!
//! Host keys are trusted on first use and pinned afterwards ([`known_hosts`]).

pub mod binary;
pub mod error;
pub mod guest;
pub mod known_hosts;
pub mod login;
pub mod password;
pub mod service;
pub mod ssh;
pub mod verify;
pub mod vm;

use std::path::PathBuf;

use hutch_proto::v1::InfoResponse;

pub use error::InstallError;
use guest::{Layout, Os, Platform, quote};
use ssh::Session;

/// How the agent is kept running on the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A systemd unit / launchd daemon, enabled and started.
    Service,
    /// No service manager: start it in the background now, with this shell
    /// command or (None) `nohup BINARY --listen unix://SOCKET &`.
    Background(Option<String>),
}

/// What to install and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--agent-binary`: the binary to upload (default: found for the guest's platform).
    pub agent_binary: Option<PathBuf>,
    /// `--prefix`: install under this guest folder instead of the system locations.
    pub prefix: Option<String>,
    /// Service or background process.
    pub mode: Mode,
}

/// What was installed, for the summary and for `--stop`.
#[derive(Debug)]
pub struct Installed {
    /// The guest's platform.
    pub platform: Platform,
    /// Where things went.
    pub layout: Layout,
    /// The uploaded binary on the host.
    pub binary: PathBuf,
    /// What the uploaded binary printed for `--version`.
    pub version: String,
    /// The agent's `Info`, when it could be asked through SSH.
    pub info: Option<InfoResponse>,
    /// How the install was checked when `Info` could not be asked.
    pub checked: Option<String>,
    /// `"sudo -n "` when commands needing root go through sudo, else empty.
    pub sudo: String,
}

impl Installed {
    /// What was installed and how it was checked, in one line.
    pub fn summary(&self) -> String {
        let layout = &self.layout;
        match (&self.info, &self.checked) {
            (Some(info), _) => format!(
                "hutch-agent {} installed at {} ({}): answers on {} ({}/{}, protocol {})",
                crate::untrusted::text::shown(&info.version),
                layout.binary,
                self.platform,
                layout.socket,
                crate::untrusted::text::shown(&info.os),
                crate::untrusted::text::shown(&info.arch),
                info.protocol
            ),
            (None, checked) => {
                format!(
                    "{} installed at {} ({}); {}",
                    self.version,
                    layout.binary,
                    self.platform,
                    checked.as_deref().unwrap_or("not checked")
                )
            }
        }
    }
}

/// Installs, starts and checks the agent over `session`.
pub async fn install(session: &Session, options: &Options) -> Result<Installed, InstallError> {
    let uname = session.check("`uname -sm`", "uname -sm", None).await?;
    let platform = Platform::from_uname(&uname)?;
    let agent = binary::find(options.agent_binary.as_deref(), platform)?;
    if agent.dynamic {
        eprintln!(
            "hutch: note: {} is dynamically linked: it runs only where the guest's libc matches; `cargo xtask dist` builds static ones",
            agent.path.display()
        );
    }
    let layout = Layout::new(platform.os, options.prefix.as_deref());
    let root = session.check("`id -u`", "id -u", None).await?.trim() == "0";
    let needs_root = options.mode == Mode::Service || options.prefix.is_none();
    let sudo = if root || !needs_root { String::new() } else { sudo(session).await? };
    if options.mode == Mode::Service && platform.os == Os::Linux {
        // Checked before anything is written: a half-done install helps no one.
        let probe = session.run("[ -d /run/systemd/system ] && command -v systemctl", None).await?;
        if probe.code != Some(0) {
            return Err(InstallError::NoServiceManager("it does not run systemd (no /run/systemd/system)".into()));
        }
    }
    eprintln!(
        "hutch: installing {} ({} MiB) for {platform} as {} on {}",
        agent.path.display(),
        agent.bytes.len() / (1 << 20),
        layout.binary,
        session.dest().shown()
    );
    upload(session, &sudo, &layout.binary, 0o755, &agent.bytes).await?;
    let version = session.check("running the uploaded agent (`--version`)", &format!("{} --version", quote(&layout.binary)), None).await?;
    let version = version.trim().to_owned();
    match &options.mode {
        Mode::Service => start_service(session, &sudo, platform.os, &layout, options.prefix.is_some()).await?,
        Mode::Background(command) => start_background(session, &layout, command.as_deref()).await?,
    }
    let opener = session.socket_opener(&layout.socket);
    let (info, checked) = match verify::info_over_ssh(&opener, verify::ANSWER_WITHIN).await {
        Ok(info) => (Some(info), None),
        // The socket is root's (mode 0600) and sshd opens it as the login user.
        Err(why) if !sudo.is_empty() && why.contains("would not open") => {
            let test = format!("{sudo}test -S {}", quote(&layout.socket));
            session.check("checking the agent's socket", &test, None).await.map_err(|_| silent(&layout, why))?;
            (None, Some(format!("{} exists (it is root's, so hutch could not call the agent as {})", layout.socket, session.dest().user)))
        }
        Err(why) => {
            let log = agent_log(session, &sudo, platform.os, &layout, &options.mode).await;
            return Err(InstallError::AgentSilent { socket: layout.socket.clone(), why, log });
        }
    };
    Ok(Installed { platform, layout, binary: agent.path, version, info, checked, sudo })
}

fn silent(layout: &Layout, why: String) -> InstallError {
    InstallError::AgentSilent { socket: layout.socket.clone(), why, log: None }
}

/// The prefix for commands that need root: empty for root, else `"sudo -n "`
/// (or a clear error when sudo wants a password).
pub async fn root_prefix(session: &Session) -> Result<String, InstallError> {
    let root = session.check("`id -u`", "id -u", None).await?.trim() == "0";
    if root { Ok(String::new()) } else { sudo(session).await }
}

/// `"sudo -n "` if sudo works without a password, else a clear error.
async fn sudo(session: &Session) -> Result<String, InstallError> {
    let out = session.run("sudo -n true", None).await?;
    if out.code == Some(0) {
        return Ok("sudo -n ".into());
    }
    let why = match out.code {
        Some(127) => "sudo is not installed".to_owned(),
        _ => out.tail(),
    };
    Err(InstallError::SudoNeedsPassword { user: session.dest().user.clone(), why })
}

/// Streams `bytes` to `path` through a temporary file, so a running agent's
/// binary is replaced atomically, never truncated under it.
async fn upload(session: &Session, sudo: &str, path: &str, mode: u32, bytes: &[u8]) -> Result<(), InstallError> {
    let dir = path.rsplit_once('/').map_or(".", |(dir, _)| if dir.is_empty() { "/" } else { dir });
    let tmp = format!("{path}.hutch-upload");
    let script = format!(
        "set -e; mkdir -p {dir}; cat > {tmp}; chmod {mode:o} {tmp}; mv -f {tmp} {path}",
        dir = quote(dir),
        tmp = quote(&tmp),
        path = quote(path)
    );
    session.check(&format!("writing {path}"), &format!("{sudo}sh -c {}", quote(&script)), Some(bytes)).await?;
    Ok(())
}

/// Writes the service file and (re)starts the service, so a reinstall runs the new binary.
async fn start_service(session: &Session, sudo: &str, os: Os, layout: &Layout, custom_place: bool) -> Result<(), InstallError> {
    match os {
        Os::Linux => {
            upload(session, sudo, &layout.service_file, 0o644, service::systemd_unit(layout).as_bytes()).await?;
            let unit = if custom_place { quote(&layout.service_file) } else { service::SYSTEMD_UNIT.to_owned() };
            let script = format!("set -e; systemctl daemon-reload; systemctl enable {unit}; systemctl restart {}", service::SYSTEMD_UNIT);
            session.check("enabling and starting hutch-agent.service", &format!("{sudo}sh -c {}", quote(&script)), None).await?;
        }
        Os::MacOs => {
            upload(session, sudo, &layout.service_file, 0o644, service::launchd_plist(layout).as_bytes()).await?;
            let label = service::LAUNCHD_LABEL;
            let plist = quote(&layout.service_file);
            let script = format!(
                "chown root:wheel {plist}; launchctl bootout system/{label} 2>/dev/null; launchctl enable system/{label}; launchctl bootstrap system {plist}"
            );
            session.check("loading the launchd daemon", &format!("{sudo}sh -c {}", quote(&script)), None).await?;
        }
    }
    Ok(())
}

/// Stops an agent this mode started before (its pid file), then starts the new one.
async fn start_background(session: &Session, layout: &Layout, command: Option<&str>) -> Result<(), InstallError> {
    let pid_file = quote(&layout.pid_file);
    let stop_old = format!(
        "if [ -f {pid_file} ]; then pid=$(cat {pid_file}); kill \"$pid\" 2>/dev/null; \
         i=0; while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; rm -f {pid_file}; fi"
    );
    session.check("stopping the previous agent", &stop_old, None).await?;
    let start = match command {
        Some(command) => command.to_owned(),
        None => format!(
            "mkdir -p \"$(dirname {log})\"; nohup {bin} --listen {addr} >{log} 2>&1 </dev/null & echo $! > {pid_file}",
            log = quote(&layout.log),
            bin = quote(&layout.binary),
            addr = quote(&format!("unix://{}", layout.socket)),
        ),
    };
    session.check("starting the agent", &start, None).await?;
    Ok(())
}

/// The end of the agent's log, to show when it does not answer.
async fn agent_log(session: &Session, sudo: &str, os: Os, layout: &Layout, mode: &Mode) -> Option<String> {
    let command = match (mode, os) {
        (Mode::Service, Os::Linux) => format!("{sudo}journalctl -u {} -n 20 --no-pager", service::SYSTEMD_UNIT),
        _ => format!("{sudo}tail -n 20 {}", quote(&layout.log)),
    };
    let out = session.run(&command, None).await.ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Flushes the guest's disks and powers it off a moment later (after this
/// command has returned), so the image keeps what was installed.
pub async fn shut_down(session: &Session, sudo: &str) -> Result<(), InstallError> {
    let script = "sync; (sleep 1; shutdown -h now || poweroff) >/dev/null 2>&1 </dev/null &";
    session.check("shutting the guest down", &format!("{sudo}sh -c {}", quote(script)), None).await?;
    Ok(())
}

/// Flushes the guest's disks (before its VM manager stops it).
pub async fn sync_disks(session: &Session) -> Result<(), InstallError> {
    session.check("`sync`", "sync", None).await?;
    Ok(())
}

/// Whether the guest is this very machine (so `--stop` must not power it off).
pub async fn is_this_machine(session: &Session) -> bool {
    let Ok(remote) = session.check("reading the guest's identity", "cat /etc/machine-id 2>/dev/null; hostname", None).await else {
        return false;
    };
    let local_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let local_host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    remote.trim() == format!("{}\n{}", local_id.trim(), local_host.trim()).trim()
}
