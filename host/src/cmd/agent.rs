//! `hutch agent install`: put hutch-agent into a guest over SSH (see
//! `crate::agent_install` for the steps), for images that do not have it.

use crate::agent_install::{self, Mode, Options, vm};
use crate::backend;
use crate::cli::{AgentCommand, InstallArgs};
use crate::error::Error;
use crate::lifecycle;
use crate::state::{StateDir, VmLock};

/// Runs `hutch agent …`; returns the exit code.
pub async fn run(command: AgentCommand) -> Result<u8, Error> {
    match command {
        AgentCommand::Install(args) => install(args).await,
    }
}

async fn install(args: InstallArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let target = match &args.name {
        Some(name) => {
            let record = state.load(name)?;
            let backend = backend::for_kind(record.kind(), &state)?;
            let endpoint = vm::running_endpoint(backend.as_ref(), &state, &record)?;
            Some((record, backend, endpoint))
        }
        None => None,
    };
    let login = args.ssh.login();
    let dest = match (&target, &args.host) {
        (Some((record, _, endpoint)), _) => vm::destination(record, endpoint, &login)?,
        (None, Some(host)) => login.destination(host.clone(), args.port, None)?,
        (None, None) => return Err(Error::Usage("say where to install: --name NAME or --host HOST".into())),
    };
    let mode = match (args.no_service, args.start_command) {
        (_, Some(command)) => Mode::Background(Some(command)),
        (true, None) => Mode::Background(None),
        (false, None) => Mode::Service,
    };
    let options = Options { agent_binary: args.ssh.agent_binary.clone(), prefix: args.prefix.clone(), mode };
    let session = login.connect(&state, &dest).await?;
    let installed = agent_install::install(&session, &options).await?;
    println!("{}", installed.summary());
    if let Some((record, _, _)) = &target
        && options.mode == Mode::Service
        && options.prefix.is_none()
    {
        vm::answers_on_vm_transport(record).await?;
    }
    if args.stop {
        match target {
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
