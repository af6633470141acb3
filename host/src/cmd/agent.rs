//! `hutch agent install`: put hutch-agent into a guest over SSH (see
//! `crate::agent_install` for the steps), for images that do not have it.

use std::time::{Duration, Instant};

use crate::agent_install::known_hosts::{self, KnownHosts};
use crate::agent_install::ssh::{Credentials, Dest, Session};
use crate::agent_install::{self, InstallError, Installed, Mode, Options, password};
use crate::backend::{self, Backend, SshEndpoint, VmState};
use crate::cli::{AgentCommand, InstallArgs, SshArgs};
use crate::error::Error;
use crate::lifecycle;
use crate::state::{StateDir, VmLock, VmRecord};

/// How long a VM's agent may take to answer on the VM's own transport after
/// the service was started.
const TRANSPORT_WITHIN: Duration = Duration::from_secs(60);

/// Runs `hutch agent …`; returns the exit code.
pub async fn run(command: AgentCommand) -> Result<u8, Error> {
    match command {
        AgentCommand::Install(args) => install(args).await,
    }
}

async fn install(args: InstallArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let vm = match &args.name {
        Some(name) => {
            let record = state.load(name)?;
            let backend = backend::for_kind(record.kind(), &state)?;
            let endpoint = running_endpoint(backend.as_ref(), &state, &record)?;
            Some((record, backend, endpoint))
        }
        None => None,
    };
    let dest = match (&vm, &args.host) {
        (Some((record, _, endpoint)), _) => Dest {
            known_as: Some(known_hosts::vm_entry(record.name.as_str())),
            ..destination(endpoint.host.clone(), endpoint.port, &args.ssh, endpoint.user.as_deref())?
        },
        (None, Some(host)) => destination(host.clone(), args.port, &args.ssh, None)?,
        (None, None) => return Err(Error::Usage("say where to install: --name NAME or --host HOST".into())),
    };
    let mode = match (args.no_service, args.start_command) {
        (_, Some(command)) => Mode::Background(Some(command)),
        (true, None) => Mode::Background(None),
        (false, None) => Mode::Service,
    };
    let options = Options { agent_binary: args.ssh.agent_binary.clone(), prefix: args.prefix.clone(), mode };
    let session = connect(&state, &dest, &args.ssh).await?;
    let installed = agent_install::install(&session, &options).await?;
    report(&installed);
    if let Some((record, _, _)) = &vm
        && options.mode == Mode::Service
        && options.prefix.is_none()
    {
        answers_on_vm_transport(record).await?;
    }
    if args.stop {
        match vm {
            Some((mut record, backend, _)) => {
                agent_install::sync_disks(&session).await?;
                session.close().await;
                let name = record.name.clone();
                let _lock = VmLock::acquire(&state.vm_dir(&name))?;
                lifecycle::stop(&state, backend.as_ref(), &mut record)?;
                println!("{} is stopped; its disk keeps the agent", record.name);
            }
            None => {
                if agent_install::is_this_machine(&session).await {
                    return Err(Error::Usage(format!("not stopping {}: it is this machine (same machine id and host name)", dest.host)));
                }
                let sudo = agent_install::root_prefix(&session).await?;
                agent_install::shut_down(&session, &sudo).await?;
                session.close().await;
                println!("{} is shutting down; its disk keeps the agent", dest.host);
            }
        }
    } else {
        session.close().await;
    }
    Ok(0)
}

/// The SSH endpoint of a hutch VM that must be running.
pub fn running_endpoint(backend: &dyn Backend, state: &StateDir, record: &VmRecord) -> Result<SshEndpoint, Error> {
    let name = record.name.clone();
    let dir = state.vm_dir(&name);
    match backend.state(record, &dir)? {
        VmState::Running => {}
        other => return Err(Error::VmDown { name: record.name.to_string(), state: other.as_str().to_owned() }),
    }
    backend.ssh_endpoint(record, &dir).ok_or_else(|| no_ssh(backend).into())
}

/// Why `--name`/`image prepare` cannot work with this backend.
pub fn no_ssh(backend: &dyn Backend) -> InstallError {
    InstallError::Unsupported(format!(
        "the {} backend gives its guests no SSH server to install through{}",
        backend.kind().as_str(),
        if backend.kind() == crate::state::BackendKind::Qemu {
            " (its image from `cargo xtask image` already contains hutch-agent); for another machine use --host"
        } else {
            ""
        }
    ))
}

/// Where to log in: `--user`, else the backend's usual user, else the local user.
pub fn destination(host: String, port: u16, ssh: &SshArgs, usual_user: Option<&str>) -> Result<Dest, Error> {
    let user = match (&ssh.user, usual_user) {
        (Some(user), _) => user.clone(),
        (None, Some(user)) => user.to_owned(),
        (None, None) => local_user()?,
    };
    Ok(Dest { host, port, user, known_as: None })
}

fn local_user() -> Result<String, Error> {
    if let Ok(user) = std::env::var("USER")
        && !user.is_empty()
    {
        return Ok(user);
    }
    match nix::unistd::User::from_uid(nix::unistd::getuid()) {
        Ok(Some(user)) => Ok(user.name),
        _ => Err(Error::Usage("cannot tell the local user name: pass --user".into())),
    }
}

/// Connects and logs in with the credentials the flags ask for.
pub async fn connect(state: &StateDir, dest: &Dest, ssh: &SshArgs) -> Result<Session, Error> {
    let known = KnownHosts::at(state.known_hosts());
    let credentials = if ssh.password {
        Credentials::Password(password::read(&dest.user, &dest.host)?)
    } else if let Some(key) = &ssh.identity {
        Credentials::Identity(key.clone())
    } else {
        Credentials::Agent
    };
    Ok(Session::connect(dest, &known, &credentials).await?)
}

/// Prints what was installed and how it was checked.
pub fn report(installed: &Installed) {
    let layout = &installed.layout;
    match (&installed.info, &installed.checked) {
        (Some(info), _) => println!(
            "hutch-agent {} installed at {} ({}): answers on {} ({}/{}, protocol {})",
            info.version, layout.binary, installed.platform, layout.socket, info.os, info.arch, info.protocol
        ),
        (None, checked) => println!(
            "{} installed at {} ({}); {}",
            installed.version,
            layout.binary,
            installed.platform,
            checked.as_deref().unwrap_or("not checked")
        ),
    }
}

/// Waits until the VM's agent answers on the VM's own transport (vsock, Tart's control socket…).
pub async fn answers_on_vm_transport(record: &VmRecord) -> Result<(), Error> {
    let deadline = Instant::now() + TRANSPORT_WITHIN;
    loop {
        match lifecycle::agent_info(record).await {
            Ok(info) => {
                println!("{} answers on {} (hutch-agent {})", record.name, record.addr_text(), info.version);
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(InstallError::AgentSilent { socket: record.addr_text(), why: e.to_string(), log: None }.into());
            }
            Err(e) => tracing::trace!("agent not answering on {} yet: {e}", record.addr_text()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
