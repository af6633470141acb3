//! What can go wrong while installing the agent over SSH, each case with what
//! the user can do about it (printed as the `hint:` line; exit code 125).

use std::path::PathBuf;

/// A failure of `hutch agent install` or `hutch image prepare`.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The TCP connection to the SSH server failed.
    #[error("cannot connect to {dest} over SSH: {source}")]
    Connect {
        /// `host:port`.
        dest: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The SSH session failed (key exchange, protocol, lost connection).
    #[error("SSH to {dest} failed: {source}")]
    Ssh {
        /// `host:port`.
        dest: String,
        /// russh's error.
        source: russh::Error,
    },
    /// The server presented a different host key than the one recorded.
    #[error(
        "the SSH host key of {host} has changed: {file}:{line} records {known}, the server now presents {presented}; \
         this is either a reinstalled/recreated machine or someone in the middle"
    )]
    HostKeyMismatch {
        /// The known_hosts name (`host` or `[host]:port`).
        host: String,
        /// hutch's known_hosts file.
        file: PathBuf,
        /// The line of the recorded key (1-based).
        line: usize,
        /// The recorded key's type and fingerprint.
        known: String,
        /// The presented key's type and fingerprint.
        presented: String,
    },
    /// hutch's known_hosts file could not be read or written.
    #[error("cannot use {path}: {why}")]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The private key file given with `--identity` is unusable.
    #[error("cannot use the key {path}: {why}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// No way to authenticate was available (no ssh-agent, no default key).
    #[error("no SSH credentials: {0}")]
    NoCredentials(String),
    /// The server refused every credential that was offered.
    #[error("{user}@{dest} refused the SSH login ({tried})")]
    AuthRefused {
        /// The remote user.
        user: String,
        /// `host:port`.
        dest: String,
        /// What was offered, e.g. "key /path", "3 keys from ssh-agent", "password".
        tried: String,
        /// Whether a password was offered.
        password: bool,
    },
    /// No password could be read.
    #[error("cannot read the SSH password: {0}")]
    Password(String),
    /// Installing needs root, the user is not root, and sudo wants a password.
    #[error("{user} is not root and `sudo -n` refused ({why})")]
    SudoNeedsPassword {
        /// The remote user.
        user: String,
        /// What sudo said.
        why: String,
    },
    /// The guest is neither Linux nor macOS on x86_64/arm64.
    #[error("unsupported guest: `uname -sm` says {0:?} (hutch-agent runs on Linux and macOS, x86_64 and arm64)")]
    UnsupportedGuest(String),
    /// No agent binary for the guest's platform was found.
    #[error("no hutch-agent binary for {platform} guests (looked in: {looked})")]
    NoAgentBinary {
        /// e.g. "linux/x86_64".
        platform: String,
        /// Where hutch looked, comma-separated.
        looked: String,
    },
    /// The given agent binary does not run on the guest.
    #[error("{path} cannot run on this guest: {why}")]
    WrongBinary {
        /// The binary.
        path: PathBuf,
        /// Why not (format, architecture).
        why: String,
    },
    /// The guest has no service manager hutch knows (systemd, launchd).
    #[error("cannot install the agent as a service on the guest: {0}")]
    NoServiceManager(String),
    /// A step run on the guest failed.
    #[error("{what} failed on the guest (exit {code}): {output}")]
    Remote {
        /// The step.
        what: String,
        /// Its exit status (-1 when none was reported).
        code: i64,
        /// The end of its output.
        output: String,
    },
    /// The agent was installed and started but does not answer.
    #[error("the installed agent does not answer on {socket}: {why}")]
    AgentSilent {
        /// The guest socket.
        socket: String,
        /// The last error.
        why: String,
        /// The end of the agent's log, when there is one.
        log: Option<String>,
    },
    /// `hutch image prepare` cannot work with this backend or VM.
    #[error("{0}")]
    Unsupported(String),
    /// The VM to install into is not running.
    #[error("VM {name} is {state}, so its agent cannot answer")]
    VmDown {
        /// The VM.
        name: crate::state::VmName,
        /// What its backend says it is.
        state: crate::backend::VmState,
    },
    /// The VM being prepared stopped while it booted.
    #[error("VM {name} did not boot: the VM stopped while booting")]
    VmStopped {
        /// The VM.
        name: crate::state::VmName,
        /// The end of its console, when the backend has one.
        console: Option<String>,
    },
    /// The VM's backend failed.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// The local user's name (the default SSH login) is unknown.
    #[error("cannot tell the local user name: pass --user")]
    NoLocalUser,
}

impl InstallError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            InstallError::Connect { .. } => "check --host/--port, and that the guest runs an SSH server (`ssh -p PORT USER@HOST` should answer)".into(),
            InstallError::Ssh { .. } => "rerun with -v for details; check that the server is an SSH server and still up".into(),
            InstallError::HostKeyMismatch { host, file, line, .. } => format!(
                "if the machine was recreated on purpose, delete line {line} (the one for {host}) from {} and rerun; otherwise do not connect",
                file.display()
            ),
            InstallError::KnownHosts { .. } => "check the permissions of hutch's state directory (HUTCH_STATE_DIR)".into(),
            InstallError::Key { .. } => "pass an unencrypted OpenSSH private key with --identity, or load it into ssh-agent (`ssh-add KEY`) and leave --identity out".into(),
            InstallError::NoCredentials(_) => "start ssh-agent and `ssh-add` your key, pass --identity KEY, or use --password".into(),
            InstallError::AuthRefused { password: true, .. } => "check --user and the password (HUTCH_SSH_PASSWORD or the prompt)".into(),
            InstallError::AuthRefused { .. } => "check --user, and that the key's public half is in the guest user's ~/.ssh/authorized_keys; use --password for images that only allow passwords".into(),
            InstallError::Password(_) => "set HUTCH_SSH_PASSWORD, or run hutch from a terminal so it can ask".into(),
            InstallError::SudoNeedsPassword { user, .. } => format!(
                "log in as root (--user root), or allow {user} passwordless sudo on the guest (e.g. `{user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/{user})"
            ),
            InstallError::UnsupportedGuest(_) => "use a Linux or macOS guest".into(),
            InstallError::NoAgentBinary { .. } => "build one (`cargo xtask dist`, or `cargo xtask image` for Linux x86_64) or pass --agent-binary PATH".into(),
            InstallError::WrongBinary { .. } => "pass --agent-binary with a hutch-agent built for the guest's OS and architecture".into(),
            InstallError::NoServiceManager(_) => {
                "use --no-service to start the agent in the background now, or --start-command CMD to start it your way".into()
            }
            InstallError::Remote { .. } => "rerun with -v to see each step; the guest's own logs may say more".into(),
            InstallError::AgentSilent { log: Some(log), .. } => format!("the agent's log ends with:\n{log}"),
            InstallError::AgentSilent { .. } => "check the service's status on the guest (`systemctl status hutch-agent` / `launchctl print system/dev.hutch.agent`)".into(),
            InstallError::Unsupported(_) | InstallError::NoLocalUser => return None,
            InstallError::VmDown { name, .. } => format!("start it with `hutch up --name {name}`"),
            InstallError::VmStopped { console: Some(console), .. } => format!("the VM's last output:\n{console}"),
            InstallError::VmStopped { console: None, .. } => "rerun with -v for details".into(),
            InstallError::Backend(e) => return e.hint(),
        })
    }
}
