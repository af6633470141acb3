//! A project's standing order for ready VMs: how many to keep, and with
//! which settings (`$state/warm/PROJECT/target.json`). `hutch warm` writes
//! it; a `hutch run --rm` in a project whose configuration says `[warm]
//! count = N` writes it too; the pool's keeper (`super::keeper`) reads it.
//!
//! The settings are kept as the flags that were given (their environment
//! variables already applied), not as the VM they resolved to: the keeper
//! resolves them again with the configuration in force each time it runs,
//! so when the project's `hutch.toml` changes, the pool follows it (the
//! ready VMs of the old settings are dropped and new ones booted).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::WarmError;
use crate::cli::UpArgs;
use crate::state::{BackendKind, StateDir, default_name};

/// The standing order's file in the project's pool folder.
const TARGET_FILE: &str = "target.json";
/// Its format.
const VERSION: u32 = 1;

/// How many ready VMs a project wants, and of what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Format version.
    pub version: u32,
    /// The project folder (or, for a pool without a workspace, the folder
    /// `hutch warm` ran in): where the configuration is read from.
    pub here: PathBuf,
    /// The settings flags, as given.
    pub flags: Flags,
    /// How many VMs to keep ready.
    pub count: u32,
}

/// The flags of `hutch warm` (and `run`) that decide a VM's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Flags {
    /// `--backend`.
    pub backend: Option<BackendKind>,
    /// `--image`.
    pub image: Option<String>,
    /// `--cpus`.
    pub cpus: Option<u32>,
    /// `--memory`.
    pub memory: Option<u32>,
    /// `--disk`.
    pub disk: Option<u64>,
    /// `--no-workspace`.
    pub no_workspace: bool,
    /// `--heavy`.
    pub heavy: Vec<String>,
    /// `--no-heavy`.
    pub no_heavy: bool,
    /// `--ro`.
    pub ro: bool,
    /// `--ro-git`.
    pub ro_git: bool,
    /// `--no-ignore`.
    pub no_ignore: bool,
    /// `--sync`.
    pub sync: bool,
    /// `--shared`.
    pub shared: bool,
    /// `--unguarded-git`.
    pub unguarded_git: bool,
    /// `--network` (or `HUTCH_NETWORK`): the keeper starts a ready VM's
    /// network process as the runs that take it will want it.
    pub network: Option<crate::config::network::Mode>,
}

impl Flags {
    /// The settings flags of `args` (its name, forwards and network flags
    /// are a run's, not a VM's contents).
    pub fn of(args: &UpArgs) -> Flags {
        Flags {
            backend: args.backend,
            image: args.image.clone(),
            cpus: args.cpus,
            memory: args.memory,
            disk: args.disk,
            no_workspace: args.no_workspace,
            heavy: args.heavy.clone(),
            no_heavy: args.no_heavy,
            ro: args.ro,
            ro_git: args.ro_git,
            no_ignore: args.no_ignore,
            sync: args.sync,
            shared: args.shared,
            unguarded_git: args.unguarded_git,
            network: args.network,
        }
    }

    /// `up` flags that say the same, for the project in `here`.
    pub fn up_args(&self, here: &Path) -> UpArgs {
        UpArgs {
            name: None,
            backend: self.backend,
            image: self.image.clone(),
            cpus: self.cpus,
            memory: self.memory,
            disk: self.disk,
            workspace: (!self.no_workspace).then(|| here.to_path_buf()),
            no_workspace: self.no_workspace,
            heavy: self.heavy.clone(),
            no_heavy: self.no_heavy,
            forward: Vec::new(),
            ro: self.ro,
            ro_git: self.ro_git,
            no_ignore: self.no_ignore,
            sync: self.sync,
            shared: self.shared,
            unguarded_git: self.unguarded_git,
            network: self.network,
            allow: Vec::new(),
        }
    }
}

/// The pool folder name of the project in `here` (with or without its
/// workspace shared): its default VM name, so people recognise it.
pub fn project_id(here: &Path, shared: bool) -> String {
    let name = default_name(here);
    if shared { name.to_string() } else { format!("{name}-noworkspace") }
}

/// The folder of project `project`'s pool: its standing order and its keeper's log.
pub fn folder(state: &StateDir, project: &str) -> PathBuf {
    state.root().join("warm").join(project)
}

impl Target {
    /// A standing order for `count` VMs of `flags` in `here`.
    pub fn new(here: &Path, flags: Flags, count: u32) -> Target {
        Target { version: VERSION, here: here.to_path_buf(), flags, count }
    }

    /// Project `project`'s standing order, if it has one.
    pub fn load(state: &StateDir, project: &str) -> Result<Option<Target>, WarmError> {
        let path = folder(state, project).join(TARGET_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(WarmError::io(format!("reading {}", path.display()), e)),
        };
        let target: Target = serde_json::from_str(&text).map_err(|e| WarmError::BadTarget { path: path.clone(), why: e.to_string() })?;
        if target.version > VERSION {
            return Err(WarmError::BadTarget { path, why: format!("written by a newer hutch (format {})", target.version) });
        }
        Ok(Some(target))
    }

    /// Writes it as project `project`'s (atomically: a keeper reading it
    /// meanwhile sees the old one or this one).
    pub fn save(&self, state: &StateDir, project: &str) -> Result<(), WarmError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = folder(state, project);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| WarmError::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(TARGET_FILE);
        let tmp = dir.join(format!(".{TARGET_FILE}.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| WarmError::BadTarget { path: path.clone(), why: e.to_string() })?;
        std::fs::write(&tmp, text + "\n")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| WarmError::io(format!("writing {}", path.display()), e))
    }

    /// Removes project `project`'s standing order (nothing to do if it has none).
    pub fn remove(state: &StateDir, project: &str) -> Result<(), WarmError> {
        let path = folder(state, project).join(TARGET_FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(WarmError::io(format!("removing {}", path.display()), e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_order_round_trips_and_gives_back_its_flags() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        let project = project_id(Path::new("/home/me/app"), true);
        assert!(project.starts_with("app-"), "{project}");
        assert_ne!(project, project_id(Path::new("/home/me/app"), false));
        assert_eq!(Target::load(&state, &project).unwrap(), None);

        let flags = Flags { cpus: Some(4), heavy: vec!["dist".into()], ro: true, ..Flags::default() };
        let target = Target::new(Path::new("/home/me/app"), flags.clone(), 3);
        target.save(&state, &project).unwrap();
        assert_eq!(Target::load(&state, &project).unwrap(), Some(target));
        let args = flags.up_args(Path::new("/home/me/app"));
        assert_eq!((args.cpus, args.workspace.as_deref(), args.ro), (Some(4), Some(Path::new("/home/me/app")), true));
        assert_eq!(Flags::of(&args), flags);

        std::fs::write(folder(&state, &project).join(TARGET_FILE), "{\"version\": 9}").unwrap();
        assert!(matches!(Target::load(&state, &project), Err(WarmError::BadTarget { .. })));
        Target::remove(&state, &project).unwrap();
        Target::remove(&state, &project).unwrap();
        assert_eq!(Target::load(&state, &project).unwrap(), None);
    }
}
