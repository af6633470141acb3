//! Fake VM managers for the Tart and Lima backends: the `tart` and `limactl`
//! scripts in `tests/fakes/`, put first on PATH, emulating each tool's
//! documented CLI with their state in a private folder. Their "guest" is a
//! real hutch-agent: the fake control socket / forwarded socket splices each
//! connection to it. Every invocation is logged (argv, one JSON line), so
//! tests can assert the exact commands hutch ran.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use crate::{Agent, binaries};

/// The size of the fake Tart base VM's disk: 50 GB, as Cirrus Labs' images.
pub const TART_BASE_DISK: u64 = 50_000_000_000;

/// Which fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vmm {
    /// `tart` (state in $TART_HOME).
    Tart,
    /// `limactl` (state in $LIMA_HOME).
    Lima,
}

impl Vmm {
    fn prefix(self) -> &'static str {
        match self {
            Vmm::Tart => "TART",
            Vmm::Lima => "LIMACTL",
        }
    }
}

/// A private world for one test: the fake's home, hutch's state, a
/// workspace, the log of commands, and the real agent standing in for the
/// guest's.
pub struct FakeVmm {
    /// Which fake.
    pub vmm: Vmm,
    /// Short root folder (Unix socket paths must stay short).
    pub root: TempDir,
    /// The agent "in the guest", when the fixture started one.
    pub agent: Option<Agent>,
    /// The socket the fake's VMs lead to (the agent's, or a hostile one's).
    guest: PathBuf,
    /// Extra environment for every hutch this fixture runs.
    pub env: Vec<(String, String)>,
}

impl FakeVmm {
    /// A fake Tart with one local VM, `base`, to clone: its disk is
    /// [`TART_BASE_DISK`] (a sparse file, as Tart's raw disks).
    pub fn tart() -> FakeVmm {
        let fake = FakeVmm::new(Vmm::Tart, &[]);
        let base = fake.vmm_home().join("vms").join("base");
        std::fs::create_dir_all(&base).expect("create the base VM");
        std::fs::write(base.join("config.json"), r#"{"cpuCount":4,"memorySize":4096,"os":"linux"}"#).expect("write the base VM");
        std::fs::File::create(base.join("disk.img")).and_then(|f| f.set_len(TART_BASE_DISK)).expect("write the base VM's disk");
        fake
    }

    /// A fake Lima with one stopped instance, `base`, to clone.
    pub fn lima() -> FakeVmm {
        FakeVmm::lima_with(&[])
    }

    /// The same, its "guest" agent started with `extra` flags too (a
    /// `--snapshot-prefix`, so a `--ro` snapshot is not the host folder itself).
    pub fn lima_with(extra: &[&str]) -> FakeVmm {
        let fake = FakeVmm::new(Vmm::Lima, extra);
        let base = fake.vmm_home().join("base");
        std::fs::create_dir_all(&base).expect("create the base instance");
        std::fs::write(base.join("lima.yaml"), "images: []\ncpus: 4\n").expect("write the base instance");
        fake
    }

    /// A fake Lima with one stopped instance, `base`, whose VMs lead to the
    /// agent listening on `guest` (a hostile one, say) instead of a real one.
    pub fn lima_in_front_of(guest: &Path) -> FakeVmm {
        let root = Self::folders();
        let fake = FakeVmm { vmm: Vmm::Lima, root, agent: None, guest: guest.to_path_buf(), env: Vec::new() };
        let base = fake.vmm_home().join("base");
        std::fs::create_dir_all(&base).expect("create the base instance");
        std::fs::write(base.join("lima.yaml"), "images: []\ncpus: 4\n").expect("write the base instance");
        fake
    }

    fn folders() -> TempDir {
        let root = tempfile::Builder::new().prefix("hf").tempdir_in("/tmp").expect("tempdir");
        for dir in ["home", "state", "ws", "shares", "local", "etc"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("create fixture folder");
        }
        root
    }

    fn new(vmm: Vmm, extra: &[&str]) -> FakeVmm {
        let root = Self::folders();
        // The "guest" sees Tart's `workspace` share where a macOS guest would
        // (a folder of shares), and keeps heavy dirs with symlinks into its
        // own local folder, so nothing is mounted on the test machine.
        std::os::unix::fs::symlink(root.path().join("ws"), root.path().join("shares/workspace")).expect("link the share");
        let agent_dir = tempfile::tempdir().expect("agent dir");
        let addr = format!("unix://{}", agent_dir.path().join("agent.sock").display());
        let (shares, local, etc) = (root.path().join("shares"), root.path().join("local"), root.path().join("etc"));
        let (shares, local, etc) = (shares.to_str().expect("utf-8"), local.to_str().expect("utf-8"), etc.to_str().expect("utf-8"));
        // The "guest's" /etc is a private folder: the egress set-up writes there.
        let mut args = vec!["--tart-shares", shares, "--local-dir", local, "--heavy-strategy", "symlink", "--etc-dir", etc];
        args.extend_from_slice(extra);
        let agent = Agent::start(agent_dir, addr, None, &args);
        let guest = agent.socket();
        FakeVmm { vmm, root, agent: Some(agent), guest, env: Vec::new() }
    }

    /// The fake's state folder ($TART_HOME or $LIMA_HOME).
    pub fn vmm_home(&self) -> PathBuf {
        self.root.path().join(match self.vmm {
            Vmm::Tart => "tart",
            Vmm::Lima => "lima",
        })
    }

    /// The workspace folder to share.
    pub fn workspace(&self) -> PathBuf {
        self.root.path().join("ws").canonicalize().expect("workspace")
    }

    /// The "guest's" /etc (where the agent writes the egress configuration).
    pub fn etc(&self) -> PathBuf {
        self.root.path().join("etc")
    }

    /// hutch's state folder.
    pub fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("commands.jsonl")
    }

    /// The agent's socket path, which the fake's sockets forward to.
    pub fn agent_socket(&self) -> PathBuf {
        self.guest.clone()
    }

    /// A `hutch` command in this world: the fake first on PATH, private
    /// state, and the backend chosen by HUTCH_BACKEND.
    pub fn hutch(&self) -> Command {
        let mut cmd = Command::new(&binaries().hutch);
        let fakes = Path::new(env!("CARGO_MANIFEST_DIR")).join("fakes");
        let path = format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap_or_default());
        let backend = match self.vmm {
            Vmm::Tart => "tart",
            Vmm::Lima => "lima",
        };
        cmd.env("PATH", path)
            .env("HOME", self.root.path().join("home"))
            .env("HUTCH_STATE_DIR", self.state())
            .env("HUTCH_BACKEND", backend)
            .env("TART_HOME", self.vmm_home())
            .env("LIMA_HOME", self.vmm_home())
            .env(format!("FAKE_{}_LOG", self.vmm.prefix()), self.log_path())
            .env("FAKE_TART_AGENT", self.agent_socket())
            .env("FAKE_LIMA_AGENT", self.agent_socket())
            .env_remove("HUTCH_ADDR")
            .env_remove("HUTCH_IMAGE")
            .env_remove("HUTCH_TOKEN_FILE")
            .env_remove("HUTCH_TART")
            .env_remove("HUTCH_LIMACTL")
            .env_remove("HUTCH_TART_TOKEN_FILE")
            .env_remove("HUTCH_LOG")
            // The agent here is on this machine: its egress listener would be
            // on this machine's loopback, shared by every test. Network tests
            // turn it on with a port of their own.
            .env("HUTCH_NETWORK", "none");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `hutch ARGS` with stdin from /dev/null.
    pub fn run(&self, args: &[&str]) -> Output {
        self.hutch().args(args).stdin(Stdio::null()).output().expect("run hutch")
    }

    /// The commands the fake ran since the last call (each its argv without
    /// the program), and forgets them.
    pub fn take_commands(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let _ = std::fs::remove_file(self.log_path());
        text.lines()
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
                entry["argv"].as_array().expect("argv").iter().map(|a| a.as_str().expect("string arg").to_owned()).collect()
            })
            .collect()
    }

    /// Live processes the fake left running (its `tart run`s or Lima host agents).
    pub fn running(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let walk = |dir: &Path, pids: &mut Vec<i32>| {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                for name in ["run.pid", "ha.pid"] {
                    let Ok(text) = std::fs::read_to_string(entry.path().join(name)) else { continue };
                    let Ok(pid) = text.trim().parse::<i32>() else { continue };
                    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() && crate::pidfd::proc_state(pid) != Some('Z') {
                        pids.push(pid);
                    }
                }
            }
        };
        // The fake's home, and any a test pointed TART_HOME/LIMA_HOME at instead.
        let overrides = self.env.iter().filter(|(k, _)| k == "TART_HOME" || k == "LIMA_HOME").map(|(_, v)| PathBuf::from(v));
        for home in std::iter::once(self.vmm_home()).chain(overrides) {
            walk(&home.join("vms"), &mut pids);
            walk(&home, &mut pids);
        }
        pids
    }
}

impl Drop for FakeVmm {
    fn drop(&mut self) {
        // Whatever a failed test left running goes with it.
        for pid in self.running() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// `argv` as owned strings, for comparing with [`FakeVmm::take_commands`].
pub fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

impl FakeVmm {
    /// Makes the fixture's workspace a git repository, and checks that `up`
    /// (with `up_args`) refuses it on this backend, whose share hutch cannot
    /// guard: nothing is created, the error names the ways out, and a
    /// project file (which the guest can write) cannot opt out. Leaves the
    /// user's configuration opting out (`unguarded_git = true`), as the
    /// caller checks next.
    pub fn refuses_a_repository_it_cannot_guard(&mut self, up_args: &[&str]) {
        let ws = self.workspace();
        let init = Command::new("git").args(["init", "-q"]).current_dir(&ws).status().expect("git");
        assert!(init.success());
        let out = self.run(up_args);
        let err = crate::stderr(&out);
        assert_eq!(crate::code(&out), 125, "{err}");
        assert!(err.contains("shares the workspace writable, .git included, and the host cannot guard part of that share"), "{err}");
        assert!(err.contains("--ro") && err.contains("--sync") && err.contains("--unguarded-git"), "{err}");
        assert_eq!(self.take_commands(), Vec::<Vec<String>>::new(), "nothing may be created");

        std::fs::write(ws.join("hutch.toml"), "unguarded_git = true\n").expect("write hutch.toml");
        let out = self.run(up_args);
        assert_eq!(crate::code(&out), 125);
        assert!(crate::stderr(&out).contains("the guest can write it"), "{}", crate::stderr(&out));
        std::fs::remove_file(ws.join("hutch.toml")).expect("remove hutch.toml");
        assert_eq!(self.take_commands(), Vec::<Vec<String>>::new());

        let config = self.root.path().join("home/.config/hutch");
        std::fs::create_dir_all(&config).expect("create the user's config folder");
        std::fs::write(config.join("config.toml"), "unguarded_git = true\n").expect("write the user's config");
        self.env.push(("XDG_CONFIG_HOME".into(), self.root.path().join("home/.config").display().to_string()));
    }
}
