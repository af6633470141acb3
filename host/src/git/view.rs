//! The read-only view of a repository's `.git` that the guest sees: what
//! its git needs to work, and nothing that configures the host's.
//!
//! A view is a folder in the VM's state folder holding hutch's copies of
//! `HEAD`, the refs (as one `packed-refs`, written from `git for-each-ref`,
//! so reftable repositories work too; hutch's own `refs/hutch/` left out),
//! the index (with any `sharedindex.*`), `info/exclude` and `shallow`, and
//! an empty `objects/` on which the namespace binds the real objects
//! read-only. Never the config (remote URLs may hold credentials; the
//! guest's gitdir gets its own), hooks or anything else. Submodules' gitdirs
//! get views of their own below `modules/`, as in the real `.git`.
//!
//! The copies are taken at every VM start, before the guest runs; the
//! objects are live (what the host commits later is visible), the refs and
//! index are not (the guest's own gitdir takes over from them).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GitError;
use super::host_git::Repo;

/// What the view says HEAD was when the guest got it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The branch HEAD names (`refs/heads/main`), if it is symbolic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symref: Option<String>,
    /// The commit, if HEAD resolves to one (not on an unborn branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
}

/// What a view was made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Made {
    /// HEAD at that moment.
    pub head: Head,
    /// The repository's object format ("sha1", "sha256").
    pub object_format: String,
}

/// Writes the view of `repo` into `view` (replacing what is there).
pub fn write(repo: &Repo, view: &Path) -> Result<Made, GitError> {
    match std::fs::remove_dir_all(view) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(GitError::io("removing the earlier view", view)(e)),
        _ => {}
    }
    for sub in ["objects", "info"] {
        let path = view.join(sub);
        std::fs::create_dir_all(&path).map_err(GitError::io("creating", &path))?;
    }
    let object_format = repo.text(&["rev-parse", "--show-object-format"])?;
    let symref = repo.text(&["symbolic-ref", "-q", "HEAD"]).ok().filter(|s| s.starts_with("refs/"));
    let oid = repo.text(&["rev-parse", "-q", "--verify", "HEAD^{commit}"]).ok().filter(|o| super::refname::is_oid(o, &object_format));
    let head_text = match (&symref, &oid) {
        (Some(symref), _) => format!("ref: {symref}\n"),
        (None, Some(oid)) => format!("{oid}\n"),
        (None, None) => {
            return Err(GitError::Unguardable {
                path: repo.gitdir.clone(),
                why: "has a HEAD that is neither a branch nor a commit".into(),
            });
        }
    };
    put(&view.join("HEAD"), head_text.as_bytes())?;
    put(&view.join("packed-refs"), &packed_refs(repo)?)?;
    for name in ["index", "info/exclude", "shallow"] {
        copy_if_present(&repo.gitdir.join(name), &view.join(name))?;
    }
    let entries = std::fs::read_dir(&repo.gitdir).map_err(GitError::io("listing", &repo.gitdir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with("sharedindex.")) {
            copy_if_present(&entry.path(), &view.join(&name))?;
        }
    }
    Ok(Made { head: Head { symref, oid }, object_format })
}

/// Every ref but hutch's own and symbolic ones, in `packed-refs` form.
fn packed_refs(repo: &Repo) -> Result<Vec<u8>, GitError> {
    let listed = repo.run(&["for-each-ref", "--format=%(objectname) %(refname) %(symref)"])?;
    // No header: git then sorts and peels the entries itself.
    let mut out = Vec::new();
    let mut count = 0;
    for line in listed.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let text = String::from_utf8_lossy(line);
        let mut parts = text.splitn(3, ' ');
        let (Some(oid), Some(name), symref) = (parts.next(), parts.next(), parts.next()) else { continue };
        if name.starts_with("refs/hutch/") || symref.is_some_and(|s| !s.is_empty()) {
            continue;
        }
        count += 1;
        if crate::untrusted::limits::GIT_VIEW_REFS.check_len(count).is_err() {
            let max = crate::untrusted::limits::GIT_VIEW_REFS.max;
            return Err(GitError::Unguardable { path: repo.gitdir.clone(), why: format!("has more than {max} refs") });
        }
        out.extend_from_slice(format!("{oid} {name}\n").as_bytes());
    }
    Ok(out)
}

fn put(path: &Path, data: &[u8]) -> Result<(), GitError> {
    std::fs::write(path, data).map_err(GitError::io("writing", path))
}

/// Copies a regular file of the host's gitdir (never through a symlink).
fn copy_if_present(from: &Path, to: &Path) -> Result<(), GitError> {
    match std::fs::symlink_metadata(from) {
        Ok(meta) if meta.is_file() => std::fs::copy(from, to).map(drop).map_err(GitError::io("copying", from)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(GitError::io("reading", from)(e)),
    }
}

/// Where a view's objects come from and go: the bind the namespace makes.
pub fn objects(gitdir: &Path, view: &Path) -> (PathBuf, PathBuf) {
    (gitdir.join("objects"), view.join("objects"))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn a_view_holds_heads_refs_and_index_and_never_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        let git = |args: &[&str]| {
            let ok = Command::new("git").args(["-c", "user.name=t", "-c", "user.email=t@t"]).args(args).current_dir(&ws).status().unwrap();
            assert!(ok.success(), "{args:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["config", "remote.origin.url", "https://user:secret-token@example.com/x.git"]);
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&["update-ref", "refs/hutch/vm/heads/main", "HEAD"]);
        git(&["symbolic-ref", "refs/remotes/origin/HEAD", "refs/heads/main"]);
        std::fs::write(ws.join(".git/info/exclude"), "*.tmp\n").unwrap();
        let view = dir.path().join("view");
        let made = write(&Repo::new(ws.join(".git"), Some(ws.clone())), &view).unwrap();
        assert_eq!(made.head.symref.as_deref(), Some("refs/heads/main"));
        assert_eq!(made.object_format, "sha1");
        assert_eq!(std::fs::read_to_string(view.join("HEAD")).unwrap(), "ref: refs/heads/main\n");
        let packed = std::fs::read_to_string(view.join("packed-refs")).unwrap();
        assert!(packed.contains(" refs/heads/main\n") && !packed.contains("refs/hutch/") && !packed.contains("origin/HEAD"), "{packed}");
        assert!(view.join("index").exists() && view.join("objects").is_dir());
        assert_eq!(std::fs::read_to_string(view.join("info/exclude")).unwrap(), "*.tmp\n");
        let everything: Vec<String> = walk(&view);
        assert!(!everything.iter().any(|p| p.contains("config") || p.contains("hooks")), "{everything:?}");
        assert!(!everything.iter().any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("secret-token"))));
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path.display().to_string());
        }
        out
    }
}
