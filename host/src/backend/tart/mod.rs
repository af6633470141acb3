//! The Tart backend: macOS and Linux guests on Apple silicon, driven through
//! Tart's documented CLI.
//!
//! | hutch | tart |
//! |---|---|
//! | create | `tart clone BASE NAME` (APFS copy-on-write), `tart set NAME --cpu N --memory MIB --random-mac [--disk-size GB]` |
//! | start | `tart run NAME --no-graphics --net-softnet-block=0.0.0.0/0 [--dir=workspace:PATH]`, detached, owned by hutch (a `crate::daemon`) |
//! | stop | `tart stop NAME` |
//! | delete | `tart delete NAME` |
//! | state | hutch's own `tart run` alive? else `tart list --format json` |
//!
//! Transport: `tart run` (Tart 2.x on macOS 14+) proxies every connection on
//! `$TART_HOME/vms/NAME/control.sock` raw to guest vsock port 8080, where
//! hutch-agent listens, so the record's address is that Unix socket: no IP
//! lookup, no SSH. With `HUTCH_TART_TOKEN_FILE` set (older Tart, no control
//! socket), hutch asks `tart ip --wait` and uses `tcp://IP:PORT` with that token
//! instead; the guest's agent must then listen on TCP with the same token.
//!
//! Disk: `--disk SIZE` becomes `tart set --disk-size GB` (decimal
//! gigabytes, rounded up). Tart only grows a disk file: a size below the
//! base's is refused by Tart, and hutch deletes the clone and says so. The
//! guest's file system grows into it where the guest does that itself
//! (cloud images' growroot on Linux); macOS guests need their APFS
//! container resized (Tart's FAQ, "Disk resizing").
//!
//! Network: the guest's way out is the agent's egress pipe to hutch's proxy
//! (`crate::net`), which needs no IP network at all. `tart run` is asked to
//! route the guest through Softnet with every IPv4 destination blocked
//! (`--net-softnet-block=0.0.0.0/0`, which implies `--net-softnet`; Softnet
//! forwards nothing but IPv4 and ARP), so a program that ignores the proxy
//! variables has no direct route. Softnet must be installed (SUID root, as
//! Tart documents); `HUTCH_TART_SOFTNET=0` keeps Tart's default NAT instead,
//! and so does the TCP transport, which needs the guest's IP.

pub mod list;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hutch_proto::addr::Addr;

use crate::backend::tool::Tool;
use crate::backend::{Backend, BackendError, VmSpec, VmState, configured_boot_timeout, disk_size, tail_of_file};
use crate::daemon::{Daemon, DaemonError, Spawned};
use crate::state::{BackendKind, BackendState, ShareSource, StateDir, TartState, VmRecord, WorkspaceShare};

/// What Softnet blocks: every IPv4 destination.
pub const SOFTNET_BLOCK: &str = "0.0.0.0/0";
/// The name of the workspace share (`--dir=workspace:PATH`).
const SHARE_NAME: &str = "workspace";
/// How long `tart stop` may take before hutch kills its `tart run`.
const STOP_GRACE: Duration = Duration::from_secs(40);
/// How to install Tart.
const INSTALL: &str = "install Tart with `brew install cirruslabs/cli/tart` (macOS 13+ on Apple silicon), or set HUTCH_TART to its path";

/// How hutch reaches a Tart guest's agent.
#[derive(Clone, Debug)]
enum Transport {
    /// `$TART_HOME/vms/NAME/control.sock`, proxied by `tart run` to vsock 8080.
    ControlSocket,
    /// `tcp://$(tart ip --wait N NAME):port` with a bearer token.
    Ip { port: u16, token_file: PathBuf },
}

/// The Tart backend, configured from the environment.
pub struct Tart {
    tool: Tool,
    home: PathBuf,
    transport: Transport,
    boot_timeout: Duration,
    /// Block the guest's direct route with Softnet.
    softnet: bool,
}

/// This backend's part of a record (a record of another backend never
/// reaches it: `backend::for_kind` picks the backend by the record's tag).
fn tart_state(record: &VmRecord) -> TartState {
    match &record.backend {
        BackendState::Tart(state) => state.clone(),
        _ => TartState::default(),
    }
}

impl Tart {
    /// Reads `HUTCH_TART` (the tart program), `TART_HOME` (default `~/.tart`,
    /// as Tart itself), `HUTCH_TART_TOKEN_FILE` and `HUTCH_TART_AGENT_PORT`
    /// (the TCP fallback; port 8080 by default).
    pub fn from_env() -> Result<Tart, BackendError> {
        let tool = Tool::new(std::env::var_os("HUTCH_TART").unwrap_or_else(|| "tart".into()), INSTALL);
        let home = match (std::env::var_os("TART_HOME"), std::env::var_os("HOME")) {
            (Some(home), _) if !home.is_empty() => PathBuf::from(home),
            (_, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".tart"),
            _ => return Err(BackendError::Unsupported("cannot find Tart's folder: set TART_HOME or HOME".into())),
        };
        let transport = match std::env::var_os("HUTCH_TART_TOKEN_FILE") {
            Some(token_file) if !token_file.is_empty() => {
                let port = match std::env::var("HUTCH_TART_AGENT_PORT") {
                    Ok(port) => {
                        port.parse().map_err(|_| BackendError::Unsupported(format!("HUTCH_TART_AGENT_PORT={port:?} is not a TCP port")))?
                    }
                    Err(_) => 8080,
                };
                Transport::Ip { port, token_file: token_file.into() }
            }
            _ => Transport::ControlSocket,
        };
        let softnet = std::env::var_os("HUTCH_TART_SOFTNET").is_none_or(|v| v != "0") && matches!(transport, Transport::ControlSocket);
        Ok(Tart { tool, home, transport, boot_timeout: configured_boot_timeout(), softnet })
    }

    /// The control socket `tart run` creates for VM `name`.
    pub fn control_socket(&self, name: &str) -> PathBuf {
        self.home.join("vms").join(name).join("control.sock")
    }

    /// Whether Tart has VM `name`, and whether it runs.
    fn listed_state(&self, name: &str) -> Result<VmState, BackendError> {
        let args = ["list", "--format", "json"];
        let json = self.tool.run(&args)?;
        list::state_of(&json, name).map_err(|why| BackendError::Command { command: self.tool.shown(&args), why })
    }

    /// Waits until `tart run` has created its control socket, failing at once
    /// with its own words if it exits first (VM missing, already running…).
    fn wait_for_control_socket(&self, name: &str, run: &Spawned, log: &Path) -> Result<(), BackendError> {
        let socket = self.control_socket(name);
        run.wait_until(self.boot_timeout, |_| socket.exists()).map_err(|e| match e {
            DaemonError::TimedOut { .. } => BackendError::Boot(format!(
                "`tart run {name}` did not create {} within {:?}: Tart 2.x on macOS 14+ is needed for it, or set HUTCH_TART_TOKEN_FILE to reach the agent over TCP",
                socket.display(),
                self.boot_timeout
            )),
            _ => exited(name, log),
        })
    }
}

/// hutch's own `tart run` of a VM, as a daemon: Tart has no detached mode,
/// so hutch keeps `tart run` running in the background, its output in the
/// VM's folder (`tart-run.log`).
fn tart_run(dir: &Path) -> Daemon {
    Daemon::new(dir, "tart-run")
}

/// The error for a `tart run` that exited during start, with its last words.
fn exited(name: &str, log: &Path) -> BackendError {
    let said = tail_of_file(log, 5).unwrap_or_else(|| "nothing".into());
    BackendError::Boot(format!("`tart run {name}` exited; it said: {said}"))
}

impl Backend for Tart {
    fn kind(&self) -> BackendKind {
        BackendKind::Tart
    }

    fn create(&self, spec: &VmSpec, _dir: &Path) -> Result<VmRecord, BackendError> {
        let base = spec.image.as_deref().ok_or_else(|| BackendError::NoImage {
            how: "pass --image VM (or set HUTCH_IMAGE): a local Tart VM with hutch-agent installed, to clone".into(),
        })?;
        let name = spec.name.as_str();
        let disk_gb = spec.disk_bytes.map(disk_size::tart_gigabytes).transpose()?.map(|gb| gb.to_string());
        self.tool.run(&["clone", base, name])?;
        let (cpus, memory) = (spec.cpus.to_string(), spec.memory_mib.to_string());
        // Every hutch VM is a clone: a fresh MAC keeps clones of one base from
        // fighting over one DHCP lease.
        let mut set = vec!["set", name, "--cpu", &cpus, "--memory", &memory, "--random-mac"];
        if let Some(gb) = &disk_gb {
            set.extend(["--disk-size", gb]);
        }
        if let Err(e) = self.tool.run(&set) {
            let _ = self.tool.run(&["delete", name]);
            return Err(match (e, &disk_gb) {
                // Tart refuses to shrink a disk ("new disk size of … should be larger than …").
                (BackendError::Command { why, .. }, Some(gb)) if why.contains("disk size") => {
                    BackendError::DiskSize(format!("Tart cannot give {name} a disk of {gb} GB (--disk): {why}"))
                }
                (e, _) => e,
            });
        }
        let share = spec
            .shared_workspace()
            .map(Path::to_path_buf)
            .map(|host_path| WorkspaceShare { host_path, source: ShareSource::TartDir { name: SHARE_NAME.into(), read_only: false } });
        let addr = match self.transport {
            Transport::ControlSocket => Some(Addr::Unix(self.control_socket(name))),
            Transport::Ip { .. } => None,
        };
        Ok(spec.record(base.to_owned(), addr, BackendState::Tart(TartState { share })))
    }

    fn start(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError> {
        let name = record.name.clone();
        let name = name.as_str();
        let mut args = vec!["run".to_owned(), name.to_owned(), "--no-graphics".to_owned()];
        if self.softnet {
            args.push(format!("--net-softnet-block={SOFTNET_BLOCK}"));
        }
        if let Some(share) = &tart_state(record).share
            && let ShareSource::TartDir { name, read_only } = &share.source
        {
            let ro = if *read_only { ":ro" } else { "" };
            args.push(format!("--dir={name}:{}{ro}", share.host_path.display()));
        }
        let daemon = tart_run(dir);
        let log = daemon.log().to_path_buf();
        let run = daemon.spawn(self.tool.command(&args)).map_err(|e| match e {
            DaemonError::AlreadyRunning { .. } => BackendError::Boot("a `tart run` for this VM is already running".into()),
            DaemonError::Spawn { source, .. } => self.tool.spawn_error(source),
            other => self.tool.spawn_error(std::io::Error::new(std::io::ErrorKind::NotFound, other.to_string())),
        })?;
        match &self.transport {
            Transport::ControlSocket => {
                self.wait_for_control_socket(name, &run, &log)?;
                record.addr = Some(Addr::Unix(self.control_socket(name)));
                record.token_file = None;
            }
            Transport::Ip { port, token_file } => {
                let wait = self.boot_timeout.as_secs().max(1).to_string();
                let ip = match self.tool.run(&["ip", "--wait", &wait, name]) {
                    Ok(ip) => ip.trim().to_owned(),
                    Err(_) if !daemon.running() => return Err(exited(name, &log)),
                    Err(e) => return Err(e),
                };
                record.addr = Some(Addr::Tcp { host: ip, port: *port });
                record.token_file = Some(token_file.clone());
            }
        }
        Ok(())
    }

    fn stop(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError> {
        let run = tart_run(dir);
        let ours = run.running();
        if !ours && self.listed_state(record.name.as_str())? != VmState::Running {
            return Ok(());
        }
        let stopped = self.tool.run(&["stop", record.name.as_str()]);
        if !ours {
            return stopped.map(drop);
        }
        // Ours: make sure it is gone, even if `tart stop` failed or hung up.
        let grace = if stopped.is_ok() { STOP_GRACE } else { Duration::ZERO };
        if !run.wait_exit(grace) {
            run.terminate(Duration::from_secs(5));
        }
        Ok(())
    }

    fn delete(&self, record: &VmRecord, dir: &Path) -> Result<(), BackendError> {
        if tart_run(dir).running() {
            self.stop(&mut record.clone(), dir)?;
        }
        match self.tool.run(&["delete", record.name.as_str()]) {
            Ok(_) => Ok(()),
            // Deleted behind hutch's back: nothing left to delete.
            Err(_) if self.listed_state(record.name.as_str())? == VmState::Missing => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn state(&self, record: &VmRecord, dir: &Path) -> Result<VmState, BackendError> {
        if tart_run(dir).running() {
            return Ok(VmState::Running);
        }
        self.listed_state(record.name.as_str())
    }

    fn ready_to_connect(&self, record: &VmRecord, _dir: &Path) -> bool {
        match self.transport {
            Transport::ControlSocket => self.control_socket(record.name.as_str()).exists(),
            Transport::Ip { .. } => true,
        }
    }

    fn console_tail(&self, dir: &Path, lines: usize) -> Option<String> {
        let log = tart_run(dir).log().to_path_buf();
        tail_of_file(&log, lines).map(|t| format!("tart run ({}):\n{t}", log.display()))
    }

    fn default_image(&self, _state: &StateDir) -> Option<String> {
        None
    }

    fn boot_timeout(&self, _record: &VmRecord) -> Duration {
        self.boot_timeout
    }

    /// Tart's stock images run sshd for user `admin`; the address comes from
    /// `tart ip` (asked only by `agent install --name` / `image prepare`).
    fn ssh_endpoint(&self, record: &VmRecord, _dir: &Path) -> Option<crate::backend::SshEndpoint> {
        let ip = self.tool.run(&["ip", record.name.as_str()]).ok()?;
        let ip = ip.trim();
        (!ip.is_empty()).then(|| crate::backend::SshEndpoint { host: ip.to_owned(), port: 22, user: Some("admin".into()) })
    }

    fn workspace_share(&self, record: &VmRecord) -> Option<hutch_proto::v1::WorkspaceShare> {
        tart_state(record).share.map(|share| share.to_proto())
    }
}
