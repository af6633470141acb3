//! A fake VM manager for unit tests of the lifecycle and of connection
//! diagnosis: it records the calls it gets and answers `state` from a script,
//! so tests can make the VM manager fail, say a VM is missing, or let a VM
//! die while it boots. (The real backends keep their integration tests,
//! against real QEMU and the fake `tart`/`limactl` CLIs.)

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use hutch_proto::addr::Addr;
use hutch_proto::v1::WorkspaceShare;

use super::{Backend, BackendError, VmSpec, VmState};
use crate::state::{BackendKind, BackendState, QemuState, RoMode, StateDir, VmRecord};

/// A small spec for VM `name`, with no workspace.
pub fn spec(name: &str, ro: Option<RoMode>) -> VmSpec {
    VmSpec {
        name: crate::state::VmName::new(name).expect("a valid test name"),
        image: None,
        cpus: 1,
        memory_mib: 64,
        disk_bytes: None,
        workspace: None,
        ephemeral: false,
        heavy_dirs: Vec::new(),
        ro,
        unguarded_git: false,
        sync: false,
    }
}

/// The fake.
pub struct FakeBackend {
    /// The kind it claims to be.
    pub kind: BackendKind,
    /// What `state` answers, in turn; the last answer repeats.
    pub states: RefCell<VecDeque<Result<VmState, String>>>,
    /// How many times `retry_boot` says it restarted the VM differently.
    pub retries: RefCell<u32>,
    /// What `boot_timeout` says.
    pub boot_timeout: Duration,
    /// The calls it got, by name.
    pub calls: RefCell<Vec<&'static str>>,
}

impl FakeBackend {
    /// A fake QEMU whose `state` answers `states` in turn.
    pub fn new(states: impl IntoIterator<Item = Result<VmState, String>>) -> FakeBackend {
        FakeBackend {
            kind: BackendKind::Qemu,
            states: RefCell::new(states.into_iter().collect()),
            retries: RefCell::new(0),
            boot_timeout: Duration::from_millis(100),
            calls: RefCell::new(Vec::new()),
        }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.borrow().clone()
    }

    fn call(&self, name: &'static str) {
        self.calls.borrow_mut().push(name);
    }
}

impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn create(&self, spec: &VmSpec, _dir: &Path) -> Result<VmRecord, BackendError> {
        self.call("create");
        Ok(spec.record("fake-image".into(), None, BackendState::Qemu(QemuState::default())))
    }

    fn start(&self, record: &mut VmRecord, dir: &Path) -> Result<(), BackendError> {
        self.call("start");
        // Nothing listens there: the agent never answers.
        record.addr = Some(Addr::Unix(dir.join("no-agent.sock")));
        Ok(())
    }

    fn stop(&self, _record: &mut VmRecord, _dir: &Path) -> Result<(), BackendError> {
        self.call("stop");
        Ok(())
    }

    fn delete(&self, _record: &VmRecord, _dir: &Path) -> Result<(), BackendError> {
        self.call("delete");
        Ok(())
    }

    fn state(&self, _record: &VmRecord, _dir: &Path) -> Result<VmState, BackendError> {
        self.call("state");
        let mut states = self.states.borrow_mut();
        let answer = if states.len() > 1 { states.pop_front() } else { states.front().cloned() };
        answer.unwrap_or(Ok(VmState::Missing)).map_err(|why| BackendError::Command { command: "fakectl list".into(), why })
    }

    fn console_tail(&self, _dir: &Path, _lines: usize) -> Option<String> {
        Some("fake console: kernel panic".into())
    }

    fn workspace_share(&self, _record: &VmRecord) -> Option<WorkspaceShare> {
        None
    }

    fn default_image(&self, _state: &StateDir) -> Option<String> {
        None
    }

    fn boot_timeout(&self, _record: &VmRecord) -> Duration {
        self.boot_timeout
    }

    fn retry_boot(&self, _record: &mut VmRecord, _dir: &Path) -> Result<bool, BackendError> {
        self.call("retry_boot");
        let mut retries = self.retries.borrow_mut();
        Ok(if *retries > 0 {
            *retries -= 1;
            true
        } else {
            false
        })
    }
}
