//! Configuration: built-in defaults, then `~/.config/hutch/config.toml` (the
//! user's), then `hutch.toml` in the project, then command-line flags — each
//! layer overriding the one before, and every value remembering where it came
//! from, so `hutch config` can say.

pub mod edit;
mod error;
mod file;
pub mod network;
pub mod node;
pub mod pattern;

use std::fmt;
use std::path::{Path, PathBuf};

use hutch_proto::size::parse_size;
use serde_json::{Value, json};

pub use error::ConfigError;
pub use file::{ConfigFile, ExecTable, Hooks, ImageKey, ImageTable, TimeoutsTable, WarmTable, env_pairs};
pub use network::{Mode, NetworkConfig};
pub use node::NodeVersion;

use crate::state::BackendKind;

/// The project file's name.
pub const PROJECT_FILE: &str = "hutch.toml";
/// Heavy artifact dirs kept on VM-local disk unless told otherwise.
pub const DEFAULT_HEAVY_DIRS: &[&str] = &["node_modules", ".next", ".svelte-kit", ".venv", "target"];
/// The most ready VMs a pool may keep (`[warm] count`, `hutch warm --count`).
pub const MAX_WARM: u32 = 64;
/// The runtime hook, when the configuration names none.
pub const DEFAULT_RUNTIME_HOOK: &str = ".hutch/runtime.sh";

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// hutch's built-in default.
    Default,
    /// A configuration file.
    File(PathBuf),
    /// A command-line flag (or its environment variable).
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Flag => f.write_str("command line"),
        }
    }
}

/// A value and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<T> {
    /// The value in force.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

impl<T> Sourced<T> {
    fn default(value: T) -> Self {
        Sourced { value, source: Source::Default }
    }

    fn set(&mut self, value: Option<T>, source: &Source) {
        if let Some(value) = value {
            *self = Sourced { value, source: source.clone() };
        }
    }
}

/// The merged configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// VM manager.
    pub backend: Sourced<BackendKind>,
    /// Base image (`None`: the backend's default).
    pub image: Sourced<Option<String>>,
    /// Virtual CPUs.
    pub cpus: Sourced<u32>,
    /// Memory in MiB.
    pub memory: Sourced<u32>,
    /// Each VM's disk size in bytes (`None`: the image's own size).
    pub disk: Sourced<Option<u64>>,
    /// Debian packages `cargo xtask image` adds to the default image (`[image] packages`).
    pub image_packages: Sourced<Vec<String>>,
    /// npm packages `cargo xtask image` installs globally in the default image (`[image] npm`).
    pub image_npm: Sourced<Vec<String>>,
    /// The Node.js release `cargo xtask image` puts into the default image (`[image] node`).
    pub image_node: Sourced<NodeVersion>,
    /// Heavy dirs.
    pub heavy: Sourced<Vec<String>>,
    /// Extra ignore patterns for `--ro` snapshots.
    pub ignore: Sourced<Vec<String>>,
    /// Environment entries for every command.
    pub env: Sourced<Vec<String>>,
    /// Per-user setup hook.
    pub setup_hook: Sourced<Option<String>>,
    /// Per-project runtime hook (relative to the project).
    pub runtime_hook: Sourced<String>,
    /// What the guest may reach, and the secrets the proxy adds.
    pub network: NetworkConfig,
    /// `hutch exec` on a terminal keeps its command as a session (`--keep`).
    pub keep: Sourced<bool>,
    /// Share `.git` writable, without the host's guard (`--unguarded-git`).
    pub unguarded_git: Sourced<bool>,
    /// How `up`/`run` give the guest the workspace (`workspace = "shared" | "sync"`).
    pub workspace: Sourced<WorkspaceMode>,
    /// Ready VMs to keep for `hutch run --rm` (`[warm] count`; `None`: no
    /// standing order from the configuration).
    pub warm_count: Sourced<Option<u32>>,
    /// How long hutch waits to reach an agent (`[timeouts] connect`, `HUTCH_CONNECT_TIMEOUT`).
    pub connect_timeout: Sourced<std::time::Duration>,
    /// How long hutch waits for one call (`[timeouts] call`, `HUTCH_CALL_TIMEOUT`).
    pub call_timeout: Sourced<std::time::Duration>,
    /// The files that were read, in order.
    pub files: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Sourced::default(BackendKind::Qemu),
            image: Sourced::default(None),
            cpus: Sourced::default(2),
            memory: Sourced::default(1024),
            disk: Sourced::default(None),
            image_packages: Sourced::default(Vec::new()),
            image_npm: Sourced::default(Vec::new()),
            image_node: Sourced::default(NodeVersion::Major(node::DEFAULT_MAJOR)),
            heavy: Sourced::default(DEFAULT_HEAVY_DIRS.iter().map(|d| (*d).to_owned()).collect()),
            ignore: Sourced::default(Vec::new()),
            env: Sourced::default(Vec::new()),
            setup_hook: Sourced::default(None),
            runtime_hook: Sourced::default(DEFAULT_RUNTIME_HOOK.to_owned()),
            network: NetworkConfig::default(),
            keep: Sourced::default(false),
            unguarded_git: Sourced::default(false),
            workspace: Sourced::default(WorkspaceMode::Shared),
            warm_count: Sourced::default(None),
            connect_timeout: Sourced::default(crate::untrusted::deadline::CONNECT),
            call_timeout: Sourced::default(crate::untrusted::deadline::CALL),
            files: Vec::new(),
        }
    }
}

impl Config {
    /// Defaults, then the user's file, then the project's (found from
    /// `project_dir` upwards).
    pub fn load(project_dir: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(user) = user_file() {
            config.layer(&user, false)?;
        }
        if let Some(project) = project_file(project_dir) {
            config.layer(&project, true)?;
        }
        config.timeouts_from_env()?;
        Ok(config)
    }

    /// `HUTCH_CONNECT_TIMEOUT` and `HUTCH_CALL_TIMEOUT`, over the files.
    fn timeouts_from_env(&mut self) -> Result<(), ConfigError> {
        use crate::untrusted::deadline::{CALL_ENV, CONNECT_ENV};
        for (var, slot) in [(CONNECT_ENV, &mut self.connect_timeout), (CALL_ENV, &mut self.call_timeout)] {
            let Some(text) = std::env::var_os(var) else { continue };
            let text = text.to_string_lossy();
            let value = crate::duration::parse(&text).map_err(|why| ConfigError::Env { var, why })?;
            slot.set(Some(value), &Source::Flag);
        }
        Ok(())
    }

    /// The deadlines for calls to agents these settings make.
    pub fn deadlines(&self) -> crate::untrusted::deadline::Deadlines {
        crate::untrusted::deadline::Deadlines { connect: self.connect_timeout.value, call: self.call_timeout.value }
    }

    /// Defaults, then the user's file only: what `cargo xtask image` builds
    /// the default image from (it belongs to the user, not to one project).
    pub fn load_user() -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(user) = user_file() {
            config.layer(&user, false)?;
        }
        Ok(config)
    }

    fn layer(&mut self, path: &Path, project: bool) -> Result<(), ConfigError> {
        let Some(file) = ConfigFile::load(path)? else { return Ok(()) };
        let source = Source::File(path.to_path_buf());
        let invalid = |key: &str, message: String| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let line = text.lines().position(|l| l.trim_start().starts_with(key)).map_or(1, |i| i + 1);
            ConfigError::Invalid { path: path.to_path_buf(), line, message }
        };
        self.backend.set(file.backend, &source);
        if let Some(ImageKey::Table(table)) = &file.image {
            let contents = [("packages", table.packages.is_some()), ("npm", table.npm.is_some()), ("node", table.node.is_some())];
            if let Some((key, _)) = contents.iter().find(|(_, set)| project && *set) {
                let why = "`[image] packages`, `npm` and `node` say what goes into your default image, which every project shares: \
                           put them in your user configuration (~/.config/hutch/config.toml) and run `cargo xtask image`";
                return Err(invalid(key, why.into()));
            }
            self.image_packages.set(table.packages.clone(), &source);
            self.image_npm.set(table.npm.clone(), &source);
            if let Some(text) = &table.node {
                self.image_node.set(Some(NodeVersion::parse(text).map_err(|why| invalid("node", why))?), &source);
            }
        }
        self.image.set(file.image.as_ref().and_then(ImageKey::name).map(|name| Some(name.to_owned())), &source);
        if let Some(text) = &file.disk {
            let bytes =
                parse_size(text).map_err(|_| invalid("disk", format!("disk = {text:?} is not a size such as \"20G\" or \"512M\"")))?;
            self.disk.set(Some(Some(bytes)), &source);
        }
        self.cpus.set(file.cpus, &source);
        self.memory.set(file.memory, &source);
        self.heavy.set(file.heavy, &source);
        self.ignore.set(file.ignore, &source);
        self.env.set(file.env, &source);
        let hooks = file.hooks.unwrap_or_default();
        self.setup_hook.set(hooks.setup.map(Some), &source);
        self.runtime_hook.set(hooks.runtime, &source);
        let line_starts = file.line_starts.clone();
        let line = |offset: usize| line_starts.partition_point(|start| *start <= offset).max(1);
        self.network.layer(file.network, file.secrets, path, &line)?;
        self.keep.set(file.exec.and_then(|e| e.keep), &source);
        if project && file.unguarded_git.is_some() {
            let why = "`unguarded_git` turns off the host's guard of .git, and this file is in the project, where the guest can write it: \
                       put it in your user configuration (~/.config/hutch/config.toml), or pass --unguarded-git";
            return Err(invalid("unguarded_git", why.into()));
        }
        self.unguarded_git.set(file.unguarded_git, &source);
        self.workspace.set(file.workspace, &source);
        if let Some(count) = file.warm.and_then(|w| w.count) {
            if count > MAX_WARM {
                return Err(invalid("count", format!("[warm] count = {count}: at most {MAX_WARM} ready VMs (each costs its memory)")));
            }
            self.warm_count.set(Some(Some(count)), &source);
        }
        let timeouts = file.timeouts.unwrap_or_default();
        for (key, text, slot) in [("connect", timeouts.connect, &mut self.connect_timeout), ("call", timeouts.call, &mut self.call_timeout)]
        {
            let Some(text) = text else { continue };
            let value = crate::duration::parse(&text).map_err(|why| invalid(key, format!("[timeouts] {key}: {why}")))?;
            slot.set(Some(value), &source);
        }
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// Applies a command-line flag (when given) on top of the files.
    pub fn flag<T>(slot: &mut Sourced<T>, value: Option<T>) {
        slot.set(value, &Source::Flag);
    }

    /// Every value with its source, as `hutch config --json` prints it.
    pub fn to_json(&self) -> Value {
        let entry = |value: Value, source: &Source| json!({ "value": value, "source": source.to_string() });
        json!({
            "backend": entry(json!(self.backend.value.as_str()), &self.backend.source),
            "image": entry(json!(self.image.value), &self.image.source),
            "cpus": entry(json!(self.cpus.value), &self.cpus.source),
            "memory": entry(json!(self.memory.value), &self.memory.source),
            "disk": entry(json!(self.disk.value), &self.disk.source),
            "image.packages": entry(json!(self.image_packages.value), &self.image_packages.source),
            "image.npm": entry(json!(self.image_npm.value), &self.image_npm.source),
            "image.node": entry(json!(self.image_node.value.to_string()), &self.image_node.source),
            "heavy": entry(json!(self.heavy.value), &self.heavy.source),
            "ignore": entry(json!(self.ignore.value), &self.ignore.source),
            "env": entry(json!(self.env.value), &self.env.source),
            "hooks.setup": entry(json!(self.setup_hook.value), &self.setup_hook.source),
            "hooks.runtime": entry(json!(self.runtime_hook.value), &self.runtime_hook.source),
            "network.mode": entry(json!(self.network.mode.value.as_str()), &self.network.mode.source),
            "network.allow": self.network.allow,
            "network.deny": self.network.deny,
            "network.trust_host_cas": entry(json!(self.network.trust_host_cas.value), &self.network.trust_host_cas.source),
            "network.guest_port": entry(json!(self.network.guest_port.value), &self.network.guest_port.source),
            "network.ask_timeout": entry(json!(format!("{} s", self.network.ask_timeout.value.as_secs_f64())), &self.network.ask_timeout.source),
            "secrets": self.network.secrets,
            "exec.keep": entry(json!(self.keep.value), &self.keep.source),
            "unguarded_git": entry(json!(self.unguarded_git.value), &self.unguarded_git.source),
            "workspace": entry(json!(self.workspace.value), &self.workspace.source),
            "warm.count": entry(json!(self.warm_count.value), &self.warm_count.source),
            "timeouts.connect": entry(json!(self.connect_timeout.value.as_secs_f64()), &self.connect_timeout.source),
            "timeouts.call": entry(json!(self.call_timeout.value.as_secs_f64()), &self.call_timeout.source),
            "files": self.files,
        })
    }
}

/// The deadlines of the current directory's configuration and the
/// environment (the defaults when it cannot be read): what the `hutch`
/// binary installs as [`deadline::source`](crate::untrusted::deadline::source).
pub fn deadlines_here() -> crate::untrusted::deadline::Deadlines {
    let cwd = std::env::current_dir().unwrap_or_default();
    Config::load(&cwd).map(|c| c.deadlines()).unwrap_or_default()
}

/// How the guest gets the workspace (`workspace = "…"`; `--sync`, `--shared`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    /// Shared live (virtio-fs, 9p, the VM manager's share).
    #[default]
    Shared,
    /// Copied onto the VM's disk and kept in step both ways (`--sync`).
    Sync,
}

/// `$XDG_CONFIG_HOME/hutch/config.toml`, else `~/.config/hutch/config.toml`.
pub fn user_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("hutch").join("config.toml"))
}

/// `~/x` → `$HOME/x`, as a shell would for a path in a configuration file.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The nearest `hutch.toml` at or above `dir`.
pub fn project_file(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().map(|d| d.join(PROJECT_FILE)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_remember_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        let project = dir.path().join(PROJECT_FILE);
        std::fs::write(&project, "cpus = 6\nheavy = [\"dist\"]\n").unwrap();
        let mut config = Config::default();
        config.layer(&project_file(&nested).unwrap(), true).unwrap();
        Config::flag(&mut config.cpus, Some(8));
        Config::flag(&mut config.memory, None);
        assert_eq!(config.cpus, Sourced { value: 8, source: Source::Flag });
        assert_eq!(config.memory, Sourced { value: 1024, source: Source::Default });
        assert_eq!(config.heavy, Sourced { value: vec!["dist".to_owned()], source: Source::File(project.clone()) });
        assert_eq!(config.to_json()["heavy"]["source"], project.display().to_string());
    }

    #[test]
    fn timeouts_come_from_the_files_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[timeouts]\ncall = \"2m\"\n").unwrap();
        let mut config = Config::default();
        config.layer(&file, true).unwrap();
        assert_eq!(config.deadlines().call, std::time::Duration::from_secs(120));
        assert_eq!(config.deadlines().connect, crate::untrusted::deadline::CONNECT);
        assert_eq!(config.to_json()["timeouts.call"]["value"], 120.0);
        std::fs::write(&file, "[timeouts]\n\nconnect = \"soon\"\n").unwrap();
        let err = Config::default().layer(&file, true).unwrap_err().to_string();
        assert!(err.contains(":3: ") && err.contains("[timeouts] connect"), "{err}");
    }

    #[test]
    fn disk_sizes_and_where_image_contents_may_be_set() {
        assert_eq!(parse_size("20G"), Ok(20 << 30));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "cpus = 2\n[image]\nnpm = [\"@openai/codex\"]\n").unwrap();
        let mut config = Config::default();
        config.layer(&file, false).unwrap();
        assert_eq!(config.image_npm.value, ["@openai/codex"]);
        let err = Config::default().layer(&file, true).unwrap_err().to_string();
        assert!(err.contains(":3: ") && err.contains("user configuration"), "{err}");
        std::fs::write(&file, "cpus = 1\nunguarded_git = true\n").unwrap();
        let mut config = Config::default();
        config.layer(&file, false).unwrap();
        assert!(config.unguarded_git.value, "the user's file may turn the guard off");
        let err = Config::default().layer(&file, true).unwrap_err().to_string();
        assert!(err.contains(":2: ") && err.contains("the guest can write it"), "{err}");
        std::fs::write(&file, "[image]\nnode = \"24\"\n").unwrap();
        let mut config = Config::default();
        assert_eq!(config.image_node.value, NodeVersion::Major(node::DEFAULT_MAJOR));
        config.layer(&file, false).unwrap();
        assert_eq!(config.image_node, Sourced { value: NodeVersion::Major(24), source: Source::File(file.clone()) });
        assert_eq!(config.to_json()["image.node"]["value"], "24");
        let err = Config::default().layer(&file, true).unwrap_err().to_string();
        assert!(err.contains(":2: ") && err.contains("`node`"), "{err}");
        std::fs::write(&file, "[image]\nname = \"x\"\nnode = \"lts\"\n").unwrap();
        let err = Config::default().layer(&file, false).unwrap_err().to_string();
        assert!(err.contains(":3: ") && err.contains("not a Node.js version"), "{err}");
        std::fs::write(&file, "\ndisk = \"lots\"\n").unwrap();
        let err = Config::default().layer(&file, true).unwrap_err().to_string();
        assert!(err.contains(":2: ") && err.contains("not a size"), "{err}");
    }
}
