//! Which VM-local gitdirs this agent set up, for the stamp every `Exited`
//! carries and for `GitState`.
//!
//! `Prepare` registers them; the list is also written to the agent's state
//! folder (`git-guard`, one tab-separated line per gitdir), so an agent that
//! hutch's init started again within the same boot still stamps them. A list
//! from an earlier boot names gitdirs that are no longer mounted: `Prepare`
//! replaces it at every start.

use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

/// The state file's name in the agent's state folder.
const FILE: &str = "git-guard";

/// One VM-local gitdir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guarded {
    /// The worktree it belongs to (absolute; the host's path).
    pub worktree: PathBuf,
    /// Where guest programs find it: `<worktree>/.git`, or
    /// `<top>/.git/modules/NAME` for a submodule.
    pub visible: PathBuf,
    /// The folder on VM-local disk.
    pub local: PathBuf,
    /// hutch's copy of the configuration it wrote (`None`: the empty gitdir
    /// of a workspace without a host repository).
    pub seeded_config: Option<PathBuf>,
}

impl Guarded {
    /// The empty gitdir of a workspace the host keeps no repository in.
    pub fn is_empty_kind(&self) -> bool {
        self.seeded_config.is_none()
    }

    fn line(&self) -> Option<String> {
        let fields = [
            self.worktree.to_str()?,
            self.visible.to_str()?,
            self.local.to_str()?,
            self.seeded_config.as_deref().map_or(Some(""), Path::to_str)?,
        ];
        // Paths from Prepare are checked to hold no control characters.
        fields.iter().all(|f| !f.chars().any(char::is_control)).then(|| fields.join("\t"))
    }

    fn parse(line: &str) -> Option<Guarded> {
        let mut fields = line.split('\t');
        let (worktree, visible, local, seeded) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        Some(Guarded {
            worktree: worktree.into(),
            visible: visible.into(),
            local: local.into(),
            seeded_config: (!seeded.is_empty()).then(|| seeded.into()),
        })
    }
}

/// The registry: in memory, and where it is saved.
struct Registry {
    entries: RwLock<Vec<Guarded>>,
    file: Option<PathBuf>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Loads the list saved in `state_dir` (at the agent's start).
pub fn load(state_dir: &Path) {
    let file = state_dir.join(FILE);
    let entries = std::fs::read_to_string(&file).map(|text| text.lines().filter_map(Guarded::parse).collect()).unwrap_or_default();
    let _ = REGISTRY.set(Registry { entries: RwLock::new(entries), file: Some(file) });
}

fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| Registry { entries: RwLock::new(Vec::new()), file: None })
}

/// Replaces the list (one `Prepare`'s gitdirs) and saves it.
pub fn replace(entries: Vec<Guarded>) {
    let registry = registry();
    if let Some(file) = &registry.file {
        let text: String = entries.iter().filter_map(Guarded::line).map(|l| l + "\n").collect();
        let temp = file.with_extension("new");
        let saved = std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, file));
        if let Err(e) = saved {
            tracing::warn!("cannot save the guarded gitdirs in {}: {e}", file.display());
        }
    }
    if let Ok(mut guard) = registry.entries.write() {
        *guard = entries;
    }
}

/// The registered gitdirs.
pub fn entries() -> Vec<Guarded> {
    registry().entries.read().map(|e| e.clone()).unwrap_or_default()
}

/// The stamp of every registered gitdir that mirrors a host repository
/// (empty when there are none), for `Exited`.
pub fn stamp() -> String {
    let Ok(entries) = registry().entries.read() else { return String::new() };
    let dirs: Vec<&Path> = entries.iter().filter(|g| !g.is_empty_kind()).map(|g| g.local.as_path()).collect();
    super::stamp::of(&dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_their_line_format() {
        let g = Guarded {
            worktree: "/w/p q".into(),
            visible: "/w/p q/.git".into(),
            local: "/var/lib/hutch/local/git-1/dir".into(),
            seeded_config: Some("/var/lib/hutch/local/git-1/config.seeded".into()),
        };
        assert_eq!(Guarded::parse(&g.line().unwrap()), Some(g.clone()));
        let empty = Guarded { seeded_config: None, ..g };
        assert_eq!(Guarded::parse(&empty.line().unwrap()), Some(empty.clone()));
        assert!(empty.is_empty_kind());
        let bad = Guarded { worktree: "/w/a\tb".into(), ..empty };
        assert_eq!(bad.line(), None);
    }
}
