//! The Lima backend: Linux guests on macOS and Linux hosts, driven through
//! `limactl`.
//!
//! | hutch | limactl |
//! |---|---|
//! | create | `limactl create --name NAME --tty=false lima.yaml` (a template hutch writes, see [`template`]); from an existing instance: `limactl clone BASE NAME --set EXPR` (Lima 1.1+) |
//!
//! Disk: `--disk SIZE` is the template's `disk:` (or `.disk` in the clone's
//! expression); Lima grows the disk at the first start and the guest's root
//! file system follows (cloud-init's growpart). Lima refuses to shrink a
//! disk, so a clone asking for less than its base has is refused by hutch
//! first (`limactl list --json` gives the base's size), without a clone to
//! clean up; a clone Lima rejects anyway is deleted.
//! | start | `limactl start NAME` (returns once the guest is up) |
//! | stop | `limactl stop NAME` |
//! | delete | `limactl delete -f NAME` |
//! | state | Lima's own `ha.pid` alive? else `limactl list --json` |
//! | ssh_endpoint | `limactl list --json`: `sshAddress`, `sshLocalPort`, `config.user.name` (for `hutch agent install --name`, `image prepare`) |
//!
//! Transport: the template forwards the agent's guest socket to
//! `$LIMA_HOME/NAME/sock/hutch.sock` over Lima's SSH master connection, which
//! stays open; hutch connects to it as `unix://`, with no handshake per command.

pub mod list;
pub mod template;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hutch_proto::addr::Addr;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::backend::tool::Tool;
use crate::backend::{Backend, BackendError, VmSpec, VmState, configured_boot_timeout, disk_size, tail_of_file};
use crate::state::{BackendKind, BackendState, LimaState, MadeBy, ShareSource, StateDir, VmRecord, WorkspaceShare};

/// The template hutch writes, in the VM's state folder.
const TEMPLATE_FILE: &str = "lima.yaml";
/// The image when none is named: Lima's default template.
const DEFAULT_TEMPLATE: &str = "template://default";
/// How to install Lima.
const INSTALL: &str = "install Lima 1.1 or newer with `brew install lima`, or set HUTCH_LIMACTL to limactl's path";

/// The Lima backend, configured from the environment.
pub struct Lima {
    tool: Tool,
    home: PathBuf,
    boot_timeout: Duration,
}

impl Lima {
    /// Reads `HUTCH_LIMACTL` (the limactl program) and `LIMA_HOME` (default
    /// `~/.lima`, as Lima itself).
    pub fn from_env() -> Result<Lima, BackendError> {
        let tool = Tool::new(std::env::var_os("HUTCH_LIMACTL").unwrap_or_else(|| "limactl".into()), INSTALL);
        let home = match (std::env::var_os("LIMA_HOME"), std::env::var_os("HOME")) {
            (Some(home), _) if !home.is_empty() => PathBuf::from(home),
            (_, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".lima"),
            _ => return Err(BackendError::Unsupported("cannot find Lima's folder: set LIMA_HOME or HOME".into())),
        };
        Ok(Lima { tool, home, boot_timeout: configured_boot_timeout() })
    }

    /// Lima's folder for instance `name`.
    fn instance_dir(&self, name: &str) -> PathBuf {
        self.home.join(name)
    }

    /// The host end of the agent's forwarded socket.
    pub fn host_socket(&self, name: &str) -> PathBuf {
        self.instance_dir(name).join("sock").join("hutch.sock")
    }

    /// Whether Lima's host agent for `name` runs, by its `ha.pid` (how Lima
    /// itself tells a running instance), without running limactl.
    fn host_agent_alive(&self, name: &str) -> bool {
        let Ok(text) = std::fs::read_to_string(self.instance_dir(name).join("ha.pid")) else { return false };
        let Ok(pid) = text.trim().parse::<i32>() else { return false };
        pid > 0 && matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(nix::errno::Errno::EPERM))
    }

    fn listed_state(&self, name: &str) -> Result<VmState, BackendError> {
        let args = ["list", "--json"];
        let out = self.tool.run(&args)?;
        list::state_of(&out, name).map_err(|why| BackendError::Command { command: self.tool.shown(&args), why })
    }

    /// Clones instance `base` (Lima 1.1+), with hutch's settings; `dir` is
    /// the VM's state folder.
    fn clone_instance(&self, spec: &VmSpec, base: &str, dir: &Path) -> Result<(), BackendError> {
        if !self.tool.succeeds(&["clone", "--help"])? {
            return Err(BackendError::Unsupported(format!(
                "--image {base} names a Lima instance to clone, but this Lima has no `limactl clone` (Lima 1.1+): upgrade Lima, or pass a template such as template://debian-12"
            )));
        }
        if let Some(asked) = spec.disk_bytes {
            let listed = self.tool.run(&["list", "--json"])?;
            let base_disk =
                list::disk_of(&listed, base).map_err(|why| BackendError::Command { command: self.tool.shown(&["list", "--json"]), why })?;
            if let Some(base_disk) = base_disk.filter(|&size| asked < size) {
                return Err(disk_size::smaller_than_base(&format!("Lima instance {base}"), base_disk, asked));
            }
        }
        let set = template::set_expression(spec);
        // Lima writes a YAML it rejects into the current folder: the VM's, not the user's project.
        let cloned = self.tool.run_in(dir, &["clone", base, spec.name.as_str(), "--set", &set]).map(drop);
        if cloned.is_err() && self.instance_dir(spec.name.as_str()).exists() {
            // `limactl clone` copies the instance before it checks the settings.
            let _ = self.tool.run(&["delete", "-f", spec.name.as_str()]);
        }
        cloned
    }
}

/// Whether `image` names an existing instance (to clone) rather than a
/// template (`template://…`, a URL, or a .yaml file).
fn is_instance(image: &str) -> bool {
    !(image.contains("://") || image.contains('/') || image.ends_with(".yaml") || image.ends_with(".yml"))
}

impl Backend for Lima {
    fn kind(&self) -> BackendKind {
        BackendKind::Lima
    }

    fn create(&self, spec: &VmSpec, dir: &Path) -> Result<VmRecord, BackendError> {
        let image = spec.image.clone().unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned());
        let name = spec.name.as_str();
        let made_by = if is_instance(&image) {
            self.clone_instance(spec, &image, dir)?;
            MadeBy::Clone
        } else {
            let file = dir.join(TEMPLATE_FILE);
            std::fs::write(&file, template::template(spec, &image)).map_err(BackendError::io(format!("writing {}", file.display())))?;
            self.tool.run(&[std::ffi::OsStr::new("create"), "--name".as_ref(), name.as_ref(), "--tty=false".as_ref(), file.as_os_str()])?;
            MadeBy::Create
        };
        let share =
            spec.shared_workspace().map(Path::to_path_buf).map(|host_path| WorkspaceShare { host_path, source: ShareSource::SamePath });
        let addr = Some(Addr::Unix(self.host_socket(name)));
        Ok(spec.record(image, addr, BackendState::Lima(LimaState { made_by, share })))
    }

    fn start(&self, record: &mut VmRecord, _dir: &Path) -> Result<(), BackendError> {
        self.tool.run(&["start", record.name.as_str()])?;
        record.addr = Some(Addr::Unix(self.host_socket(record.name.as_str())));
        Ok(())
    }

    fn stop(&self, record: &mut VmRecord, _dir: &Path) -> Result<(), BackendError> {
        if self.host_agent_alive(record.name.as_str()) {
            self.tool.run(&["stop", record.name.as_str()])?;
        }
        Ok(())
    }

    fn delete(&self, record: &VmRecord, _dir: &Path) -> Result<(), BackendError> {
        match self.tool.run(&["delete", "-f", record.name.as_str()]) {
            Ok(_) => Ok(()),
            // Deleted behind hutch's back: nothing left to delete.
            Err(_) if self.listed_state(record.name.as_str())? == VmState::Missing => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn state(&self, record: &VmRecord, _dir: &Path) -> Result<VmState, BackendError> {
        if self.host_agent_alive(record.name.as_str()) {
            return Ok(VmState::Running);
        }
        self.listed_state(record.name.as_str())
    }

    fn console_tail(&self, dir: &Path, lines: usize) -> Option<String> {
        // The state folder is named after the VM, as is the instance. Lima's
        // host agent logs boot progress and port-forwarding errors here.
        let log = self.instance_dir(&dir.file_name()?.to_string_lossy()).join("ha.stderr.log");
        tail_of_file(&log, lines).map(|t| format!("lima host agent ({}):\n{t}", log.display()))
    }

    fn default_image(&self, _state: &StateDir) -> Option<String> {
        Some(DEFAULT_TEMPLATE.to_owned())
    }

    fn boot_timeout(&self, _record: &VmRecord) -> Duration {
        self.boot_timeout
    }

    fn ssh_endpoint(&self, record: &VmRecord, _dir: &Path) -> Option<crate::backend::SshEndpoint> {
        let out = self.tool.run(&["list", "--json"]).ok()?;
        list::ssh_of(&out, record.name.as_str()).unwrap_or_else(|why| {
            tracing::warn!("{why}");
            None
        })
    }

    fn workspace_share(&self, record: &VmRecord) -> Option<hutch_proto::v1::WorkspaceShare> {
        match &record.backend {
            BackendState::Lima(state) => state.share.as_ref().map(WorkspaceShare::to_proto),
            _ => None,
        }
    }
}
