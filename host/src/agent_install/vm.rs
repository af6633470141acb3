//! Installing into a hutch VM rather than a host given by name: where its
//! SSH server answers (its backend knows), logging in while it boots, and
//! checking afterwards that the agent answers on the VM's own transport
//! (vsock, Tart's control socket…), as `hutch exec` will reach it.

use std::time::{Duration, Instant};

use super::InstallError;
use super::known_hosts;
use super::login::Login;
use super::ssh::{Dest, Session};
use crate::backend::{Backend, SshEndpoint, VmState};
use crate::connect;
use crate::daemon::{poll_until_async, retry_until_async};
use crate::state::{BackendKind, StateDir, VmRecord};

/// Pause between attempts to reach a booting guest's SSH server.
const SSH_RETRY_EVERY: Duration = Duration::from_millis(500);
/// How long a VM's agent may take to answer on the VM's own transport after
/// the service was started.
const TRANSPORT_WITHIN: Duration = Duration::from_secs(60);
/// Lines of console shown when the VM stops while booting.
const CONSOLE_LINES: usize = 30;

/// The SSH endpoint of a hutch VM that must be running.
pub fn running_endpoint(backend: &dyn Backend, state: &StateDir, record: &VmRecord) -> Result<SshEndpoint, InstallError> {
    let dir = state.vm_dir(&record.name);
    match backend.state(record, &dir)? {
        VmState::Running => {}
        other => return Err(InstallError::VmDown { name: record.name.clone(), state: other }),
    }
    backend.ssh_endpoint(record, &dir).ok_or_else(|| no_ssh(backend))
}

/// Why `--name`/`image prepare` cannot work with this backend.
pub fn no_ssh(backend: &dyn Backend) -> InstallError {
    InstallError::Unsupported(format!(
        "the {} backend gives its guests no SSH server to install through{}",
        backend.kind().as_str(),
        if backend.kind() == BackendKind::Qemu {
            " (its image from `cargo xtask image` already contains hutch-agent); for another machine use --host"
        } else {
            ""
        }
    ))
}

/// The destination of VM `record` at `endpoint`, pinned under the VM's name
/// in the known hosts.
pub fn destination(record: &VmRecord, endpoint: &SshEndpoint, login: &Login) -> Result<Dest, InstallError> {
    Ok(Dest {
        known_as: Some(known_hosts::vm_entry(record.name.as_str())),
        ..login.destination(endpoint.host.clone(), endpoint.port, endpoint.user.as_deref())?
    })
}

/// Logs into a VM that is booting (`image prepare`): waits for its backend
/// to know the SSH endpoint and for sshd to answer, until `deadline`,
/// failing at once if the VM stops.
pub async fn log_in_while_booting(
    state: &StateDir,
    backend: &dyn Backend,
    record: &VmRecord,
    login: &Login,
    deadline: Instant,
) -> Result<Session, InstallError> {
    let dir = state.vm_dir(&record.name);
    let left = || deadline.saturating_duration_since(Instant::now());
    let endpoint =
        poll_until_async(left(), SSH_RETRY_EVERY, || async { backend.ssh_endpoint(record, &dir) }).await.ok_or_else(|| no_ssh(backend))?;
    let dest = destination(record, &endpoint, login)?;
    let session = poll_until_async(left(), SSH_RETRY_EVERY, || async {
        match login.connect(state, &dest).await {
            Ok(session) => Some(Ok(session)),
            // sshd is not up yet while the guest boots (behind QEMU's port
            // forward, that is a connection closed during the handshake).
            Err(e @ (InstallError::Connect { .. } | InstallError::Ssh { .. })) => match backend.state(record, &dir) {
                Ok(VmState::Running) if Instant::now() < deadline => None,
                Ok(VmState::Running) => Some(Err(e)),
                Ok(_) => {
                    Some(Err(InstallError::VmStopped { name: record.name.clone(), console: backend.console_tail(&dir, CONSOLE_LINES) }))
                }
                Err(e) => Some(Err(e.into())),
            },
            Err(e) => Some(Err(e)),
        }
    })
    .await;
    // The last attempt runs at the deadline and settles; `None` only if it never ran.
    session.unwrap_or_else(|| Err(no_ssh(backend)))
}

/// Waits until the VM's agent answers on the VM's own transport (vsock,
/// Tart's control socket…), directly: no multiplexer for a VM being set up.
pub async fn answers_on_vm_transport(record: &VmRecord) -> Result<(), InstallError> {
    let answered = retry_until_async(TRANSPORT_WITHIN, Duration::from_millis(200), || async {
        let client = connect::direct(record).await.map_err(|e| e.to_string())?;
        let answer = client.describe().await.map_err(|e| e.to_string());
        if let Err(e) = &answer {
            tracing::trace!("agent not answering on {} yet: {e}", record.addr_text());
        }
        answer
    })
    .await;
    match answered {
        Ok(info) => {
            println!("{} answers on {} (hutch-agent {})", record.name, record.addr_text(), crate::untrusted::text::shown(&info.version));
            Ok(())
        }
        Err(why) => Err(InstallError::AgentSilent { socket: record.addr_text(), why, log: None }),
    }
}
