//! Applying the guest's refs, once fetched under `refs/hutch/<vm>/`, to the
//! host's repository: what may move, and what is refused and named.
//!
//! - A branch the host has and the guest moved forward is fast-forwarded
//!   (`git update-ref NEW OLD`: it fails, and is retried later, if the host
//!   moved it meanwhile). For the branch the host has checked out, the index
//!   follows with a two-way `git read-tree -m -i OLD NEW` (the shared
//!   worktree already holds the guest's files): what the user staged on the
//!   host survives, and if it touches a file the guest's commits change,
//!   the branch is left alone and that is said.
//! - A branch or tag the host lacks is created.
//! - Refused, kept as `refs/hutch/<vm>/…` and named: a branch that diverged
//!   from the host's, a tag that differs from the host's, and any commit
//!   that adds a submodule (a gitlink) at a path the host's index and HEAD
//!   do not have: with it applied, a `<path>/.git` the guest put in the
//!   worktree would be a repository the host's `git status` recurses into.
//!   A name git or hutch refuses is named and never written.
//! - HEAD: when the guest switched branch and the host's HEAD is still what
//!   the guest was given, the host's HEAD follows (with its index), so the
//!   host's `git status` matches the shared worktree; otherwise it stays,
//!   and that is said.
//! - A branch the guest deleted stays on the host (nothing is ever deleted).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use super::GitError;
use super::host_git::Repo;
use super::refname::GuestRef;
use super::report::{Arrived, Refused, RepoReport, short};
use super::view::Head;

use crate::untrusted::limits::GIT_NEW_COMMITS;

/// The guest's HEAD, as its advertisement said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestHead {
    /// On this branch (`main`).
    Branch(String),
    /// Detached at this commit.
    Detached(String),
    /// Not said (an unborn branch, or an odd name).
    Unknown,
}

/// What the guest has, from its advertisement (names already checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// Branches and tags, with their commits (tags: the tag object).
    pub refs: BTreeMap<GuestRef, String>,
    /// Its HEAD.
    pub head: GuestHead,
}

/// Where the applying happens.
pub struct Context<'a> {
    /// The host's repository.
    pub repo: &'a Repo,
    /// The VM's name (for `refs/hutch/<vm>/`).
    pub vm: &'a str,
    /// HEAD when the guest got its copy (nothing known: default).
    pub seed: &'a Head,
    /// The worktree is the guest's too (a shared workspace): the index and
    /// HEAD may follow. Not for a `--ro-git` snapshot.
    pub shared_worktree: bool,
}

/// Applies `candidates` (guest refs that differ from both the host's and
/// what is kept, already fetched under `refs/hutch/<vm>/`) and HEAD; says
/// what happened in `report`. Returns whether something failed for a reason
/// that may pass (a locked index, a branch moved meanwhile): the caller
/// then tries again later.
pub fn apply(cx: &Context<'_>, guest: &Guest, candidates: &[GuestRef], report: &mut RepoReport) -> Result<bool, GitError> {
    let host = host_refs(cx.repo)?;
    let head_before = head(cx.repo);
    let mut retry = false;
    let mut allowed: Option<BTreeSet<Vec<u8>>> = None;
    for r in candidates {
        let Some(g) = guest.refs.get(r) else { continue };
        let kept = r.kept(cx.vm);
        let h = host.get(&r.full());
        if h == Some(g) {
            drop_kept(cx.repo, &kept)?;
            continue;
        }
        let refuse = |why: String| Refused { name: r.short(), why, kept: Some(kept.clone()) };
        let (from, exclude): (Option<&String>, Vec<OsString>) = match (r, h) {
            (GuestRef::Branch(_), Some(h)) if is_ancestor(cx.repo, h, g)? => (Some(h), vec![format!("^{h}").into()]),
            (GuestRef::Branch(_), Some(h)) if is_ancestor(cx.repo, g, h)? => {
                drop_kept(cx.repo, &kept)?;
                continue;
            }
            (GuestRef::Branch(_), Some(_)) => {
                report.refused.push(refuse("it diverged from the host's; merge or rebase it yourself".into()));
                continue;
            }
            (GuestRef::Tag(_), Some(_)) => {
                report.refused.push(refuse("the host has a different tag of that name".into()));
                continue;
            }
            (_, None) => (None, vec!["--not".into(), "--branches".into(), "--tags".into()]),
        };
        let commits = count(cx.repo, g, &exclude)?;
        if GIT_NEW_COMMITS.check(commits).is_err() {
            report.refused.push(refuse(format!("it brings {commits} new commits, more than hutch checks ({})", GIT_NEW_COMMITS.max)));
            continue;
        }
        let allowed = match &allowed {
            Some(allowed) => allowed,
            None => allowed.insert(allowed_gitlinks(cx.repo)?),
        };
        if let Some(path) = new_gitlink(cx.repo, g, &exclude, allowed)? {
            let why = format!(
                "a commit in it adds a submodule at {} that the host does not have (its `.git` would be the guest's)",
                crate::untrusted::text::shown_bytes(&path)
            );
            report.refused.push(refuse(why));
            continue;
        }
        let checked_out = head_before.symref.as_deref() == Some(r.full().as_str());
        let done = match (from, checked_out) {
            (Some(h), true) if cx.shared_worktree => checkout(cx.repo, &r.full(), h, g, false)?,
            (Some(_), true) => {
                Err(format!("the host has it checked out and the guest's worktree is its own copy: `git merge --ff-only {kept}`"))
            }
            (Some(h), false) => update_ref(cx.repo, &r.full(), g, h)?,
            (None, _) => update_ref(cx.repo, &r.full(), g, &zero(g))?,
        };
        match done {
            Ok(()) => {
                drop_kept(cx.repo, &kept)?;
                report.arrived.push(Arrived { name: r.short(), from: from.cloned(), to: g.clone(), commits });
            }
            Err(why) => {
                retry = true;
                report.refused.push(Refused { name: r.short(), why: format!("{why}; tried again later"), kept: None });
                drop_kept(cx.repo, &kept)?;
            }
        }
    }
    if cx.shared_worktree {
        retry |= follow_head(cx, guest, &head_before, report)?;
    }
    Ok(retry)
}

/// Moves the host's HEAD to the guest's branch when the host's is still
/// what the guest was given; else says where each is.
fn follow_head(cx: &Context<'_>, guest: &Guest, before: &Head, report: &mut RepoReport) -> Result<bool, GitError> {
    let now = head(cx.repo);
    match &guest.head {
        GuestHead::Branch(name) if now.symref.as_deref() != Some(format!("refs/heads/{name}").as_str()) => {
            let full = format!("refs/heads/{name}");
            let unchanged = cx.seed.symref.is_some() && before.symref == cx.seed.symref && before.oid == cx.seed.oid;
            let target = host_refs(cx.repo)?.get(&full).cloned();
            let guest_oid = guest.refs.get(&GuestRef::Branch(name.clone()));
            match (unchanged, target, &now.oid) {
                (true, Some(target), Some(from)) if Some(&target) == guest_oid => match checkout(cx.repo, &full, from, &target, true)? {
                    Ok(()) => report.notes.push(format!("HEAD: now on {name}, as in the guest")),
                    Err(why) => {
                        report
                            .notes
                            .push(format!("HEAD: the guest is on {name}, the host stays on {}: {why}; tried again later", on(&now)));
                        return Ok(true);
                    }
                },
                _ => report.notes.push(format!("HEAD: the guest is on {name}, the host stays on {}", on(&now))),
            }
        }
        GuestHead::Detached(oid) if now.oid.as_deref() != Some(oid.as_str()) => report.notes.push(format!(
            "HEAD: the guest's is detached at {} (a rebase or a checkout of a commit in progress?); the host's stays on {}",
            short(oid),
            on(&now)
        )),
        _ => {}
    }
    Ok(false)
}

fn on(head: &Head) -> String {
    match (&head.symref, &head.oid) {
        (Some(symref), _) => symref.trim_start_matches("refs/heads/").to_owned(),
        (None, Some(oid)) => format!("commit {}", short(oid)),
        (None, None) => "nothing".into(),
    }
}

/// The host's HEAD now.
pub fn head(repo: &Repo) -> Head {
    Head {
        symref: repo.text(&["symbolic-ref", "-q", "HEAD"]).ok().filter(|s| !s.is_empty()),
        oid: repo.text(&["rev-parse", "-q", "--verify", "HEAD^{commit}"]).ok().filter(|s| !s.is_empty()),
    }
}

/// The host's branches and tags (and hutch's kept refs), by full name.
pub fn host_refs(repo: &Repo) -> Result<BTreeMap<String, String>, GitError> {
    let listed = repo.run(&["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags", "refs/hutch"])?;
    Ok(String::from_utf8_lossy(&listed)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(oid, name)| (name.to_owned(), oid.to_owned())))
        .collect())
}

fn is_ancestor(repo: &Repo, ancestor: &str, of: &str) -> Result<bool, GitError> {
    repo.succeeds(&["merge-base", "--is-ancestor", ancestor, of])
}

/// Commits reachable from `tip` and not from `exclude`.
fn count(repo: &Repo, tip: &str, exclude: &[OsString]) -> Result<u64, GitError> {
    let mut args: Vec<OsString> = vec!["rev-list".into(), "--count".into(), tip.into()];
    args.extend(exclude.iter().cloned());
    repo.text(&args).map(|t| t.trim().parse().unwrap_or(u64::MAX))
}

/// Gitlink paths the host already has (its index and HEAD).
fn allowed_gitlinks(repo: &Repo) -> Result<BTreeSet<Vec<u8>>, GitError> {
    let mut allowed = BTreeSet::new();
    let index = repo.run(&["ls-files", "--stage", "-z"])?;
    let tree = repo.run(&["ls-tree", "-r", "-z", "HEAD"]).unwrap_or_default();
    for entry in index.split(|&b| b == 0).chain(tree.split(|&b| b == 0)) {
        if entry.starts_with(b"160000 ")
            && let Some(tab) = entry.iter().position(|&b| b == b'\t')
        {
            allowed.insert(entry[tab + 1..].to_vec());
        }
    }
    Ok(allowed)
}

/// The first gitlink a commit in `tip --not exclude` adds or changes at a
/// path not in `allowed`.
fn new_gitlink(repo: &Repo, tip: &str, exclude: &[OsString], allowed: &BTreeSet<Vec<u8>>) -> Result<Option<Vec<u8>>, GitError> {
    let mut args: Vec<OsString> =
        ["log", "--raw", "-z", "--no-renames", "--root", "-m", "--no-abbrev", "--format=", tip].iter().map(OsString::from).collect();
    args.extend(exclude.iter().cloned());
    let out = repo.run(&args)?;
    let mut tokens = out.split(|&b| b == 0);
    while let Some(token) = tokens.next() {
        let token = token.strip_prefix(b"\n").unwrap_or(token);
        if !token.starts_with(b":") {
            continue;
        }
        let Some(path) = tokens.next() else { break };
        let new_mode = token.split(|&b| b == b' ').nth(1).unwrap_or_default();
        if new_mode == b"160000" && !allowed.contains(path) {
            return Ok(Some(path.to_vec()));
        }
    }
    Ok(None)
}

/// `git update-ref NAME NEW OLD`; `Err(why)` when the ref moved meanwhile.
fn update_ref(repo: &Repo, name: &str, new: &str, old: &str) -> Result<Result<(), String>, GitError> {
    let message = "hutch: the guest's commits";
    let out = repo.command(&["update-ref", "-m", message, name, new, old]).output().map_err(GitError::NoGit)?;
    Ok(if out.status.success() { Ok(()) } else { Err("the host's ref moved meanwhile".into()) })
}

/// The all-zero object id of `like`'s format: "must not exist yet".
fn zero(like: &str) -> String {
    "0".repeat(like.len())
}

fn drop_kept(repo: &Repo, kept: &str) -> Result<(), GitError> {
    if repo.succeeds(&["show-ref", "--verify", "--quiet", kept])? {
        repo.run(&["update-ref", "-d", kept])?;
    }
    Ok(())
}

/// Moves the checked-out branch `name` from `from` to `to` (or, `switch`,
/// HEAD to `name`, already at `to`) with the index following: holds
/// `index.lock` as git does, two-way merges into a copy of the index, moves
/// the ref, then puts the copy in place. `Err(why)` when it must not or
/// cannot now.
fn checkout(repo: &Repo, name: &str, from: &str, to: &str, switch: bool) -> Result<Result<(), String>, GitError> {
    let gitdir = &repo.gitdir;
    let lock = gitdir.join("index.lock");
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok(Err("the host's index is locked (a git command is running there?)".into()));
        }
        Err(e) => return Err(GitError::io("locking", &lock)(e)),
    }
    struct Unlock(std::path::PathBuf);
    impl Drop for Unlock {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _unlock = Unlock(lock);
    let temp = gitdir.join("index.hutch");
    let _remove_temp = Unlock(temp.clone());
    let index = gitdir.join("index");
    if index.exists() {
        std::fs::copy(&index, &temp).map_err(GitError::io("copying", &index))?;
    }
    let merged = repo.command(&["read-tree", "-m", "-i", from, to]).env("GIT_INDEX_FILE", &temp).output().map_err(GitError::NoGit)?;
    if !merged.status.success() {
        return Ok(Err(format!(
            "what is staged on the host touches files the guest's commits change ({})",
            crate::untrusted::text::shown_bytes(merged.stderr.trim_ascii())
        )));
    }
    if switch {
        repo.run(&["symbolic-ref", "-m", "hutch: as in the guest", "HEAD", name])?;
    } else if let Err(why) = update_ref(repo, name, to, from)? {
        return Ok(Err(why));
    }
    std::fs::rename(&temp, &index).map_err(GitError::io("replacing", &index))?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, env: &[(&str, &Path)], args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]).args(args).current_dir(dir);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
    }

    /// A host repository and a guest gitdir over its worktree, as the agent makes one.
    struct World {
        _root: tempfile::TempDir,
        ws: PathBuf,
        guest: PathBuf,
        seed: Head,
    }

    impl World {
        fn new() -> World {
            let root = tempfile::tempdir().unwrap();
            let ws = root.path().join("ws");
            std::fs::create_dir(&ws).unwrap();
            git(&ws, &[], &["init", "-q"]);
            std::fs::write(ws.join("a.txt"), "one\n").unwrap();
            git(&ws, &[], &["add", "."]);
            git(&ws, &[], &["commit", "-qm", "one"]);
            let guest = root.path().join("guest");
            git(root.path(), &[], &["init", "-q", "--bare", guest.to_str().unwrap()]);
            git(&guest, &[], &["config", "core.bare", "false"]);
            std::fs::write(guest.join("objects/info/alternates"), format!("{}\n", ws.join(".git/objects").display())).unwrap();
            std::fs::write(guest.join("packed-refs"), git(&ws, &[], &["for-each-ref", "--format=%(objectname) %(refname)"]) + "\n")
                .unwrap();
            std::fs::copy(ws.join(".git/HEAD"), guest.join("HEAD")).unwrap();
            std::fs::copy(ws.join(".git/index"), guest.join("index")).unwrap();
            let seed = head(&Repo::new(ws.join(".git"), Some(ws.clone())));
            World { _root: root, ws, guest, seed }
        }

        fn guest_git(&self, args: &[&str]) -> String {
            git(&self.ws, &[("GIT_DIR", &self.guest), ("GIT_WORK_TREE", &self.ws)], args)
        }

        fn repo(&self) -> Repo {
            Repo::new(self.ws.join(".git"), Some(self.ws.clone()))
        }

        /// Fetches `refs` as `take` would, and applies them.
        fn apply(&self, refs: &[GuestRef], guest_head: GuestHead) -> (RepoReport, bool) {
            let mut guest = Guest { refs: BTreeMap::new(), head: guest_head };
            for r in refs {
                let oid = self.guest_git(&["rev-parse", &r.full()]);
                git(&self.ws, &[], &["fetch", "-q", self.guest.to_str().unwrap(), &format!("+{}:{}", r.full(), r.kept("vm"))]);
                guest.refs.insert(r.clone(), oid);
            }
            let mut report = RepoReport::new(&self.ws);
            let repo = self.repo();
            let cx = Context { repo: &repo, vm: "vm", seed: &self.seed, shared_worktree: true };
            let retry = apply(&cx, &guest, refs, &mut report).unwrap();
            (report, retry)
        }
    }

    #[test]
    fn the_hosts_head_and_index_follow_a_guest_that_switched_branch() {
        let w = World::new();
        std::fs::write(w.ws.join("s.txt"), "staged on the host\n").unwrap();
        git(&w.ws, &[], &["add", "s.txt"]);
        w.guest_git(&["switch", "-q", "-c", "feature"]);
        std::fs::write(w.ws.join("a.txt"), "two\n").unwrap();
        w.guest_git(&["commit", "-qm", "two", "a.txt"]);
        let (report, retry) = w.apply(&[GuestRef::Branch("feature".into())], GuestHead::Branch("feature".into()));
        assert!(!retry, "{report:?}");
        assert_eq!(report.arrived.len(), 1, "{report:?}");
        assert_eq!(report.notes, ["HEAD: now on feature, as in the guest"]);
        assert_eq!(git(&w.ws, &[], &["symbolic-ref", "HEAD"]), "refs/heads/feature");
        assert_eq!(
            git(&w.ws, &[], &["status", "--porcelain"]),
            "A  s.txt",
            "the index matches the worktree, and the host's staged file stays"
        );
    }

    #[test]
    fn a_host_that_moved_on_keeps_its_head_and_conflicting_staged_changes_keep_the_branch() {
        let w = World::new();
        w.guest_git(&["switch", "-q", "-c", "feature"]);
        git(&w.ws, &[], &["commit", "-q", "--allow-empty", "-m", "host moved on"]);
        let (report, _) = w.apply(&[GuestRef::Branch("feature".into())], GuestHead::Branch("feature".into()));
        assert_eq!(report.notes, ["HEAD: the guest is on feature, the host stays on main"]);
        assert_eq!(git(&w.ws, &[], &["symbolic-ref", "HEAD"]), "refs/heads/main");

        // The guest commits on the host's checked-out branch a file the host has staged otherwise.
        let w = World::new();
        std::fs::write(w.ws.join("a.txt"), "the host's\n").unwrap();
        git(&w.ws, &[], &["add", "a.txt"]);
        std::fs::write(w.ws.join("a.txt"), "the guest's\n").unwrap();
        w.guest_git(&["commit", "-qm", "guest", "a.txt"]);
        let before = git(&w.ws, &[], &["rev-parse", "main"]);
        let (report, retry) = w.apply(&[GuestRef::Branch("main".into())], GuestHead::Branch("main".into()));
        assert!(retry);
        assert_eq!(report.refused.len(), 1, "{report:?}");
        assert!(report.refused[0].why.contains("what is staged on the host touches files the guest's commits change"), "{report:?}");
        assert_eq!(git(&w.ws, &[], &["rev-parse", "main"]), before, "the branch stays");
        assert!(!w.ws.join(".git/index.lock").exists() && !w.ws.join(".git/index.hutch").exists());
    }
}
