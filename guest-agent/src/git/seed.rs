//! Building a VM-local gitdir from the host's read-only view of a
//! repository's `.git`.
//!
//! The view holds the host's `objects/` (read-only) and hutch's copies of
//! `HEAD`, `packed-refs`, `index` (with any `sharedindex.*` files), and, when
//! the host has them, `info/exclude` and `shallow`. The gitdir made from it:
//!
//! - borrows the objects: `objects/info/alternates` names the view's, so
//!   nothing is copied and what the host commits later is visible at once;
//!   objects the guest makes go into the gitdir's own `objects/`;
//! - takes HEAD, the refs and the index from the host at every VM start
//!   (the host is the truth for what the shared worktree holds; it took the
//!   guest's commits at the last `hutch down`). Loose refs under
//!   `refs/heads`, `refs/tags` and `refs/remotes` left from an earlier boot
//!   are replaced; everything else the guest made (its objects, stash,
//!   reflogs, hooks, configuration) stays. A commit a VM that stopped
//!   without `hutch down` had not handed back is still in the reflog;
//! - gets a configuration of hutch's own on first use: the repository
//!   format and object format of the host's, the host user's identity, and
//!   `core.checkStat = minimal` (the host's index holds the host's inode and
//!   device numbers, which the guest sees differently; without it the first
//!   `git status` would re-read every file over the share). The guest may
//!   change it; a copy of what hutch wrote is kept beside it so `GitState`
//!   can say that it did.

use std::path::{Path, PathBuf};

use super::GitError;

/// Files of the view copied as they are, when present.
const COPIED: &[&str] = &["HEAD", "packed-refs", "index", "info/exclude", "shallow"];
/// Files that would point git at another gitdir: one made from the host's
/// view has none, whatever the guest put there before.
const REDIRECTS: &[&str] = &["commondir", "gitdir"];
/// Ref namespaces the host's copy replaces at every start.
const RESEEDED_REFS: &[&str] = &["refs/heads", "refs/tags", "refs/remotes"];
/// Largest file copied from the view (an index of a very large repository is
/// some hundreds of MiB; anything bigger is not what hutch writes there).
const MAX_COPIED_BYTES: u64 = 2 << 30;

/// What the gitdir's configuration says about the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// "sha1" (or empty) or "sha256".
    pub object_format: String,
    /// The host user's `user.name`.
    pub user_name: String,
    /// The host user's `user.email`.
    pub user_email: String,
    /// `core.worktree`, for a submodule's gitdir.
    pub worktree: Option<PathBuf>,
    /// The names of the submodules this gitdir holds (`modules/NAME`),
    /// marked `active`: git counts a submodule as initialized only when
    /// its configuration says so, and the host's `submodule.NAME.url` is
    /// not copied (a URL may hold credentials). Without it the guest's
    /// `git submodule status` would call every submodule uninitialized.
    pub submodules: Vec<String>,
}

impl Identity {
    /// The names of the submodules directly below `prefix` (`""` for the
    /// top gitdir, `modules/a/` for submodule `a`'s) among `rels`, the
    /// gitdirs of every submodule (`modules/a`, `modules/a/modules/b`).
    pub fn submodules_below<'a>(prefix: &str, rels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        rels.into_iter()
            .filter_map(|rel| rel.strip_prefix(prefix)?.strip_prefix("modules/"))
            .filter(|name| !name.is_empty() && !name.contains("/modules/"))
            .map(str::to_owned)
            .collect()
    }
}

/// Makes (or refreshes) the gitdir `dir` from the view `view`; `seeded` is
/// where the copy of hutch's configuration goes. Returns every path it wrote
/// or created, so the caller can give them to the user commands run as.
pub fn seed(view: &Path, dir: &Path, seeded: &Path, identity: &Identity) -> Result<Vec<PathBuf>, GitError> {
    let mut written = Vec::new();
    for sub in ["", "objects", "objects/info", "refs", "refs/heads", "refs/tags", "info"] {
        let path = dir.join(sub);
        if !path.is_dir() {
            std::fs::create_dir_all(&path).map_err(GitError::io("creating", &path))?;
            written.push(path);
        }
    }
    for namespace in RESEEDED_REFS {
        let path = dir.join(namespace);
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(GitError::io("removing the earlier", &path)(e)),
            _ => {}
        }
    }
    for name in REDIRECTS {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(GitError::io("removing", &path)(e)),
            _ => {}
        }
    }
    for sub in ["refs/heads", "refs/tags"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(GitError::io("creating", &path))?;
        written.push(path);
    }
    check_head(&view.join("HEAD"))?;
    for name in COPIED {
        copy_if_present(&view.join(name), &dir.join(name), &mut written)?;
    }
    copy_shared_indexes(view, dir, &mut written)?;
    let alternates = dir.join("objects/info/alternates");
    write(&alternates, format!("{}\n", view.join("objects").display()).as_bytes())?;
    written.push(alternates);
    let config = dir.join("config");
    if !config.exists() {
        let text = config_text(identity);
        write(&config, text.as_bytes())?;
        write(seeded, text.as_bytes())?;
        written.push(config);
    }
    Ok(written)
}

/// Makes the empty gitdir of a workspace the host keeps no repository in:
/// a folder the guest may `git init` in.
pub fn empty(dir: &Path) -> Result<Vec<PathBuf>, GitError> {
    if dir.is_dir() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(GitError::io("creating", dir))?;
    Ok(vec![dir.to_path_buf()])
}

/// The configuration hutch writes into a new gitdir.
pub fn config_text(identity: &Identity) -> String {
    let sha256 = identity.object_format == "sha256";
    let mut text = format!(
        "[core]\n\trepositoryformatversion = {}\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n\tcheckStat = minimal\n\ttrustCtime = false\n",
        u8::from(sha256)
    );
    if let Some(worktree) = &identity.worktree {
        text.push_str(&format!("\tworktree = {}\n", quoted(&worktree.display().to_string())));
    }
    if sha256 {
        text.push_str("[extensions]\n\tobjectFormat = sha256\n");
    }
    for name in &identity.submodules {
        text.push_str(&format!("[submodule {}]\n\tactive = true\n", quoted(name)));
    }
    if !identity.user_name.is_empty() || !identity.user_email.is_empty() {
        text.push_str("[user]\n");
        if !identity.user_name.is_empty() {
            text.push_str(&format!("\tname = {}\n", quoted(&identity.user_name)));
        }
        if !identity.user_email.is_empty() {
            text.push_str(&format!("\temail = {}\n", quoted(&identity.user_email)));
        }
    }
    text
}

/// A value as git's config parser reads it back unchanged: in double quotes,
/// with `\` and `"` escaped; control characters (which no name, address or
/// path hutch passes holds) are dropped.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// HEAD must be a symbolic ref into `refs/` or an object id: what hutch writes.
fn check_head(path: &Path) -> Result<(), GitError> {
    let text = std::fs::read(path).map_err(GitError::io("reading", path))?;
    let text = String::from_utf8_lossy(&text);
    let line = text.trim_end_matches('\n');
    let hex = |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    let symbolic = line.strip_prefix("ref: refs/").is_some_and(|r| !r.is_empty() && !r.bytes().any(|b| b.is_ascii_control() || b == b' '));
    if line.contains('\n') || !(symbolic || hex(line)) {
        return Err(GitError::BadView { path: path.to_path_buf(), why: "not a symbolic ref or an object id".into() });
    }
    Ok(())
}

/// Copies `from` to `to` (replacing it), or removes `to` when `from` is
/// absent; never follows a symlink in the view.
fn copy_if_present(from: &Path, to: &Path, written: &mut Vec<PathBuf>) -> Result<(), GitError> {
    match std::fs::symlink_metadata(from) {
        Ok(meta) if meta.is_file() => {
            if meta.len() > MAX_COPIED_BYTES {
                return Err(GitError::BadView { path: from.to_path_buf(), why: format!("{} bytes, over {MAX_COPIED_BYTES}", meta.len()) });
            }
            let temp = to.with_extension("hutch-new");
            std::fs::copy(from, &temp).map_err(GitError::io("copying the host's", from))?;
            std::fs::rename(&temp, to).map_err(GitError::io("replacing", to))?;
            written.push(to.to_path_buf());
            Ok(())
        }
        Ok(_) => Err(GitError::BadView { path: from.to_path_buf(), why: "not a regular file".into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::remove_file(to) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(GitError::io("removing the earlier", to)(e)),
            _ => Ok(()),
        },
        Err(e) => Err(GitError::io("reading", from)(e)),
    }
}

/// A split index (`core.splitIndex`) names `sharedindex.<id>` files beside it.
fn copy_shared_indexes(view: &Path, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), GitError> {
    let entries = std::fs::read_dir(view).map_err(GitError::io("listing", view))?;
    for entry in entries {
        let entry = entry.map_err(GitError::io("listing", view))?;
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if text.starts_with("sharedindex.") && text.len() <= 80 {
            copy_if_present(&entry.path(), &dir.join(text), written)?;
        }
    }
    Ok(())
}

/// Writes `data` to `path` through a temporary file and a rename.
fn write(path: &Path, data: &[u8]) -> Result<(), GitError> {
    let temp = path.with_extension("hutch-new");
    std::fs::write(&temp, data).map_err(GitError::io("writing", &temp))?;
    std::fs::rename(&temp, path).map_err(GitError::io("replacing", path))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .env_remove("GIT_DIR")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A host repository and the view hutch's host side makes of it.
    fn host_and_view(root: &Path) -> (PathBuf, PathBuf) {
        let host = root.join("host");
        std::fs::create_dir(&host).unwrap();
        git(&host, &["init", "-q"]);
        std::fs::write(host.join("a.txt"), "one\n").unwrap();
        git(&host, &["add", "."]);
        git(&host, &["commit", "-qm", "one"]);
        git(&host, &["branch", "side"]);
        let view = root.join("view");
        std::fs::create_dir_all(view.join("info")).unwrap();
        std::fs::write(view.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(view.join("packed-refs"), git(&host, &["for-each-ref", "--format=%(objectname) %(refname)"])).unwrap();
        std::fs::copy(host.join(".git/index"), view.join("index")).unwrap();
        std::fs::write(view.join("info/exclude"), "*.log\n").unwrap();
        std::os::unix::fs::symlink(host.join(".git/objects"), view.join("objects")).unwrap();
        (host, view)
    }

    #[test]
    fn a_seeded_gitdir_works_like_the_hosts_and_commits_stay_in_it() {
        let root = tempfile::tempdir().unwrap();
        let (host, view) = host_and_view(root.path());
        let dir = root.path().join("local/dir");
        let identity = Identity { user_name: "Host User".into(), user_email: "me@host".into(), ..Identity::default() };
        let written = seed(&view, &dir, &root.path().join("local/config.seeded"), &identity).unwrap();
        assert!(written.contains(&dir.join("config")) && written.contains(&dir.join("index")));
        let guest = |args: &[&str]| {
            let out = Command::new("git").args(args).current_dir(&host).env("GIT_DIR", &dir).env("GIT_WORK_TREE", &host).output().unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(guest(&["status", "--porcelain"]), "", "a fresh seed is clean");
        assert_eq!(guest(&["branch", "--format=%(refname:short)"]), "main\nside\n");
        std::fs::write(host.join("a.txt"), "two\n").unwrap();
        std::fs::write(host.join("x.log"), "ignored by info/exclude\n").unwrap();
        assert_eq!(guest(&["status", "--porcelain"]), " M a.txt\n");
        guest(&["commit", "-qam", "two"]);
        assert_eq!(guest(&["log", "--format=%an <%ae> %s", "-1"]), "Host User <me@host> two\n");
        assert_eq!(git(&host, &["log", "--format=%s"]), "one\n", "the host's repository is untouched");

        // The next start takes the host's refs again; the guest's objects,
        // configuration and reflog stay, a redirection does not.
        std::fs::write(dir.join("config"), format!("{}[core]\n\teditor = vi\n", std::fs::read_to_string(dir.join("config")).unwrap()))
            .unwrap();
        std::fs::write(dir.join("commondir"), "/elsewhere\n").unwrap();
        seed(&view, &dir, &root.path().join("local/config.seeded"), &identity).unwrap();
        assert_eq!(guest(&["log", "--format=%s", "main"]), "one\n");
        assert!(guest(&["reflog", "show", "main"]).contains("two"));
        assert!(std::fs::read_to_string(dir.join("config")).unwrap().contains("editor = vi"));
        assert!(!dir.join("commondir").exists());
    }

    #[test]
    fn a_view_whose_head_is_not_hutchs_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let (_, view) = host_and_view(root.path());
        std::fs::write(view.join("HEAD"), "ref: ../../etc\nmore\n").unwrap();
        let err = seed(&view, &root.path().join("dir"), &root.path().join("seeded"), &Identity::default()).unwrap_err();
        assert!(matches!(err, GitError::BadView { .. }), "{err}");
    }

    #[test]
    fn each_gitdir_names_only_its_own_submodules() {
        let rels = ["modules/libs/lib", "modules/libs/lib/modules/inner", "modules/vendor/empty"];
        assert_eq!(Identity::submodules_below("", rels), ["libs/lib", "vendor/empty"]);
        assert_eq!(Identity::submodules_below("modules/libs/lib/", rels), ["inner"]);
        assert!(Identity::submodules_below("modules/vendor/empty/", rels).is_empty());
    }

    #[test]
    fn the_configuration_quotes_what_it_is_given() {
        let identity = Identity {
            object_format: "sha256".into(),
            user_name: "A \"B\" \\ C\n[core]".into(),
            user_email: String::new(),
            worktree: Some("/w/sub".into()),
            submodules: vec!["libs/lib".into()],
        };
        let text = config_text(&identity);
        assert!(text.contains("[submodule \"libs/lib\"]\n\tactive = true\n"), "{text}");
        assert!(text.contains("repositoryformatversion = 1") && text.contains("objectFormat = sha256"), "{text}");
        assert!(text.contains("\tname = \"A \\\"B\\\" \\\\ C[core]\"\n"), "{text}");
        assert!(text.contains("\tworktree = \"/w/sub\"\n") && !text.contains("email"), "{text}");
        assert_eq!(text.lines().filter(|l| *l == "[core]").count(), 1, "{text}");
    }
}
