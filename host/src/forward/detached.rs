//! The background forwarder of `hutch up --forward`: a `hutch forward --name
//! NAME …` process run as a daemon of the VM (`crate::daemon`: detached,
//! its output in `forward.log`, found again by the lock on that log), stopped
//! by `down`/`rm`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{ForwardError, PortMapping};
use crate::daemon::{Daemon, DaemonError};
use crate::state::{StateDir, VmName};

/// The forwarder's log (its stdout and stderr) in the VM's state folder.
pub const LOG_FILE: &str = "forward.log";

/// How long the forwarder has to bind its ports and say so.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the forwarder has to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The forwarder of the VM whose folder is `vm_dir`.
pub(crate) fn daemon(vm_dir: &Path) -> Daemon {
    Daemon::new(vm_dir, "forward")
}

/// Replaces VM `name`'s forwarder (if any) by one for `mappings`. The ports
/// are checked here first, so a busy one fails `hutch up` itself with the
/// port's name.
pub fn start(state: &StateDir, name: &VmName, mappings: &[PortMapping]) -> Result<(), ForwardError> {
    let dir = state.vm_dir(name);
    stop(&dir);
    drop(super::bind(mappings)?);

    let failed = |why: String| ForwardError::Detached { name: name.to_string(), why };
    let exe = std::env::current_exe().map_err(|e| failed(format!("cannot find the hutch executable: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args(["forward", "--name", name.as_str()]).args(mappings.iter().map(ToString::to_string)).env_remove("HUTCH_ADDR");
    let daemon = daemon(&dir);
    let spawned = daemon.spawn(cmd).map_err(|e| failed(e.to_string()))?;
    let listening = |news: &str| news.lines().filter(|line| line.contains(" → guest :")).count() >= mappings.len();
    spawned.wait_until(START_TIMEOUT, listening).map_err(|e| match e {
        DaemonError::Exited { said, .. } if said == "nothing" => failed("it exited without a word".into()),
        DaemonError::Exited { said, .. } => failed(said.trim_start_matches("hutch: ").to_owned()),
        DaemonError::TimedOut { .. } => {
            failed(format!("it did not report its listeners within {START_TIMEOUT:?} (see {})", daemon.log().display()))
        }
        other => failed(other.to_string()),
    })
}

/// Stops the forwarder of the VM whose folder is `vm_dir`, if it runs.
pub fn stop(vm_dir: &Path) {
    daemon(vm_dir).terminate(STOP_GRACE);
}
