//! Which paths a walk includes, decided one path at a time.
//!
//! The tree walk ([`crate::tree::walk`]) decides inclusion while it descends:
//! `.gitignore` and `.hutchignore` files of every folder from the root down,
//! `.git` left out, [`WalkRules::exclude_dirs`] left out. A watcher learns of
//! one new path at a time (a file created in a watched folder) and must make
//! the same decision without walking the whole tree again; [`Rules`] keeps
//! the ignore files of every folder it has seen and answers for a path whose
//! folders are all included. It follows the `ignore` crate's precedence (the
//! walk's own matcher): `.hutchignore` before `.gitignore`, the deepest file
//! first within each kind. As the walk does not require a repository, a
//! `.gitignore` applies below it even inside a nested repository. The tests
//! check it against the walk on generated trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::tree::HUTCHIGNORE;
use crate::v1::WalkRules;

/// The ignore files a walk reads in every folder.
pub const IGNORE_FILES: [&str; 2] = [".gitignore", HUTCHIGNORE];

/// The matchers of one folder.
#[derive(Default)]
struct Folder {
    /// `.hutchignore`, if the folder has one.
    custom: Option<Gitignore>,
    /// `.gitignore`, if the folder has one.
    git: Option<Gitignore>,
}

/// The walk's inclusion rules for one root, with the ignore files read so far.
pub struct Rules {
    root: PathBuf,
    rules: WalkRules,
    /// Folders with an ignore file, by relative path
    /// (empty for the root).
    folders: BTreeMap<Vec<u8>, Folder>,
}

impl Rules {
    /// The rules for `root`, with no folder's ignore files read yet.
    pub fn new(root: &Path, rules: &WalkRules) -> Rules {
        Rules { root: root.to_path_buf(), rules: rules.clone(), folders: BTreeMap::new() }
    }

    /// Whether ignore files matter at all (not `--no-ignore`).
    pub fn reads_ignore_files(&self) -> bool {
        !self.rules.no_ignore
    }

    /// Reads the ignore files of the folder at `rel` (relative, empty for the
    /// root) again: after it was found, or after one of them changed.
    pub fn load_folder(&mut self, rel: &[u8]) {
        let dir = join(&self.root, rel);
        let mut folder = Folder::default();
        if !self.rules.no_ignore {
            folder.git = matcher(&dir, ".gitignore");
            folder.custom = matcher(&dir, HUTCHIGNORE);
        }
        if folder.git.is_none() && folder.custom.is_none() {
            self.folders.remove(rel);
        } else {
            self.folders.insert(rel.to_vec(), folder);
        }
    }

    /// Forgets the folders at and below `rel` (it was deleted or moved away).
    pub fn forget_below(&mut self, rel: &[u8]) {
        let below: Vec<Vec<u8>> = self.folders.keys().filter(|k| is_at_or_below(k, rel)).cloned().collect();
        for key in below {
            self.folders.remove(&key);
        }
    }

    /// Whether the walk includes the entry at `rel` (relative, not empty),
    /// given that every folder above it is included. `is_dir`: it is a folder.
    pub fn includes(&self, rel: &[u8], is_dir: bool) -> bool {
        let name = rel.rsplit(|b| *b == b'/').next().unwrap_or(rel);
        if name == b".git" && !self.rules.include_git {
            return false;
        }
        if is_dir && self.rules.exclude_dirs.iter().any(|d| d.as_bytes() == name) {
            return false;
        }
        if self.rules.no_ignore {
            return true;
        }
        let path = join(&self.root, rel);
        // The folders above, deepest first, ending with the root.
        let ancestors = std::iter::successors(Some(parent(rel)), |p| if p.is_empty() { None } else { Some(parent(p)) });
        let mut custom = Match::None;
        let mut git = Match::None;
        for folder in ancestors.filter_map(|p| self.folders.get(p)) {
            if custom.is_none()
                && let Some(m) = &folder.custom
            {
                custom = m.matched(&path, is_dir).map(|_| ());
            }
            if git.is_none()
                && let Some(m) = &folder.git
            {
                git = m.matched(&path, is_dir).map(|_| ());
            }
        }
        let decided = if custom.is_none() { git } else { custom };
        !decided.is_ignore()
    }

    /// Whether `rel` names an ignore file, whose change changes the rules.
    pub fn is_ignore_file(&self, rel: &[u8]) -> bool {
        let name = rel.rsplit(|b| *b == b'/').next().unwrap_or(rel);
        !self.rules.no_ignore && IGNORE_FILES.iter().any(|f| f.as_bytes() == name)
    }
}

/// The matcher of ignore file `name` in `dir`, if it exists.
fn matcher(dir: &Path, name: &str) -> Option<Gitignore> {
    let file = dir.join(name);
    if !file.is_file() {
        return None;
    }
    let mut builder = GitignoreBuilder::new(dir);
    // A malformed line is skipped, as the walk skips it.
    let _ = builder.add(&file);
    builder.build().ok()
}

/// The folder holding `rel` (empty at the top).
pub fn parent(rel: &[u8]) -> &[u8] {
    rel.iter().rposition(|b| *b == b'/').map_or(&rel[..0], |i| &rel[..i])
}

/// Whether `path` is `folder` or lies below it (relative paths; the empty
/// folder is the root, above everything).
pub fn is_at_or_below(path: &[u8], folder: &[u8]) -> bool {
    folder.is_empty() || path == folder || (path.len() > folder.len() && path.starts_with(folder) && path[folder.len()] == b'/')
}

/// `root` joined with the relative path `rel` (bytes).
pub fn join(root: &Path, rel: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    if rel.is_empty() { root.to_path_buf() } else { root.join(std::ffi::OsStr::from_bytes(rel)) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::tree::walk;

    /// Every path of the tree decided one at a time, parents first, as a
    /// watcher would: only what lies below included folders is asked about.
    fn decided(root: &Path, rules: &WalkRules) -> BTreeSet<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let mut matcher = Rules::new(root, rules);
        matcher.load_folder(b"");
        let mut included = BTreeSet::new();
        let mut stack = vec![Vec::new()];
        while let Some(dir) = stack.pop() {
            let mut names: Vec<_> = std::fs::read_dir(join(root, &dir)).unwrap().map(|e| e.unwrap()).collect();
            names.sort_by_key(|e| e.file_name());
            for entry in names {
                let mut rel = dir.clone();
                if !rel.is_empty() {
                    rel.push(b'/');
                }
                rel.extend_from_slice(entry.file_name().as_bytes());
                let is_dir = entry.file_type().unwrap().is_dir();
                if matcher.includes(&rel, is_dir) {
                    if is_dir {
                        matcher.load_folder(&rel);
                        stack.push(rel.clone());
                    }
                    included.insert(rel);
                }
            }
        }
        included
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn one_path_at_a_time_agrees_with_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        write(&root, ".gitignore", "*.log\nbuild/\n/top-only\n!keep.log\n");
        write(&root, ".hutchignore", "secret*\n!secret-ok\n");
        for rel in ["a.log", "keep.log", "build/x", "src/build/y", "top-only", "src/top-only", "secret.txt", "secret-ok", "src/main.rs"] {
            write(&root, rel, "x");
        }
        write(&root, "src/.gitignore", "!*.log\ngen/\n");
        write(&root, "src/b.log", "x");
        write(&root, "src/gen/z", "x");
        write(&root, "src/.hutchignore", "main.rs\n");
        // A nested repository: the root's .gitignore still applies in it.
        write(&root, "vendor/lib/.git/HEAD", "ref");
        write(&root, "vendor/lib/c.log", "x");
        write(&root, "vendor/lib/.gitignore", "d.txt\n");
        write(&root, "vendor/lib/d.txt", "x");
        write(&root, "node_modules/m/index.js", "x");
        write(&root, "pkg/node_modules/n.js", "x");
        write(&root, "node_modules.txt", "x");
        for rules in [
            WalkRules::default(),
            WalkRules { include_git: true, ..WalkRules::default() },
            WalkRules { no_ignore: true, ..WalkRules::default() },
            WalkRules { exclude_dirs: vec!["node_modules".into()], ..WalkRules::default() },
        ] {
            let walked: BTreeSet<Vec<u8>> = walk(&root, &rules).unwrap().entries.into_iter().map(|e| e.path).collect();
            let one_by_one = decided(&root, &rules);
            let show = |s: &BTreeSet<Vec<u8>>| s.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>();
            assert_eq!(show(&one_by_one), show(&walked), "rules {rules:?}");
        }
    }
}
