//! Taking the guest's commits into the host's repositories: when, from
//! where, and the fetch itself.
//!
//! When: after a command whose `Exited.git_stamp` differs from the last one
//! seen (the agent stamps its gitdirs' refs; an unchanged stamp costs a
//! string comparison), and always at `hutch down`, `hutch rm` and the end
//! of `run --rm`, before the VM goes, and on `hutch fetch`. One hand-back at
//! a time per VM (a lock in its folder).
//!
//! How, per repository (and per submodule gitdir): `git ls-remote` through
//! the [`bridge`](super::bridge) lists the guest's refs (bounded; names
//! checked, see [`super::refname`]); the branches and tags that differ from
//! both the host's and what hutch already keeps for this VM are fetched
//! with `git fetch` into `refs/hutch/<vm>/…` (`transfer.fsckObjects`, no
//! tags followed, no submodules recursed into, no hooks), then
//! [`apply`](super::apply)'d. The guest's HEAD comes from the same listing.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use hutch_proto::v1::GitStateRequest;

use super::GitError;
use super::apply::{self, Context, Guest, GuestHead};
use super::guard::{Guard, GuardedRepo};
use super::host_git::Repo;
use super::refname::{GuestRef, is_oid};
use super::report::{Refused, RepoReport};
use super::view::Head;
use crate::exec::{Finished, Outcome};
use crate::state::{StateDir, VmRecord};
use crate::target::Target;

/// The last stamp seen, in the VM's folder.
const STAMP_FILE: &str = "git/stamp";
/// The notes already given for this VM start, in the VM's folder.
const NOTED_FILE: &str = "git/noted";
/// One hand-back at a time, per VM.
const LOCK_FILE: &str = "git/lock";

/// How hutch reaches the guest from host git: the bridge's environment.
#[derive(Clone, Debug)]
pub enum Source {
    /// A VM by name.
    Vm(String),
    /// An agent by address, and the token file for a `tcp://` one.
    Addr(String, Option<PathBuf>),
}

/// One repository to take commits from.
#[derive(Clone, Debug)]
pub struct Taken {
    /// The host's repository.
    pub repo: Repo,
    /// The gitdir's path in the guest.
    pub guest_gitdir: PathBuf,
    /// HEAD when the guest got its copy.
    pub seed: Head,
    /// The object format.
    pub object_format: String,
    /// The worktree is shared with the guest.
    pub shared_worktree: bool,
}

/// The repositories of a guard, submodules included.
pub fn from_guard(guard: &Guard) -> Vec<Taken> {
    let mut out = Vec::new();
    for repo in &guard.repos {
        let GuardedRepo { worktree, gitdir: Some(gitdir), object_format, head, modules, .. } = repo else { continue };
        out.push(Taken {
            repo: Repo::new(gitdir, Some(worktree.clone())),
            guest_gitdir: worktree.join(".git"),
            seed: head.clone(),
            object_format: object_format.clone(),
            shared_worktree: true,
        });
        for module in modules {
            out.push(Taken {
                repo: Repo::new(&module.gitdir, Some(module.worktree.clone())),
                guest_gitdir: worktree.join(".git").join(&module.rel),
                seed: module.head.clone(),
                object_format: object_format.clone(),
                shared_worktree: true,
            });
        }
    }
    out
}

/// After a command in a VM: takes the guest's commits if its refs moved.
pub async fn after_exec(target: &Target, finished: Option<&Finished>) {
    let Target::Vm { state, record } = target else { return };
    let dir = state.vm_dir(&record.name);
    super::watch::tell_notices(&dir);
    let Some(Finished { outcome: Outcome::Exited(exited), .. }) = finished else { return };
    if exited.git_stamp.is_empty() {
        return;
    }
    if std::fs::read_to_string(dir.join(STAMP_FILE)).is_ok_and(|s| s == exited.git_stamp) {
        return;
    }
    if take_back(state, record).await.complete {
        save_stamp(&dir, &exited.git_stamp);
    }
}

/// Remembers the stamp the guest's repositories have now.
pub fn save_stamp(vm_dir: &Path, stamp: &str) {
    let path = vm_dir.join(STAMP_FILE);
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(path, stamp);
}

/// How a hand-back went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handed {
    /// The VM has guarded repositories (else there was nothing to take).
    pub guarded: bool,
    /// Everything was taken (nothing to try again).
    pub complete: bool,
    /// Something was said (arrived, refused, noted).
    pub told: bool,
}

/// Takes the commits of every guarded repository of `record`'s VM, tells the
/// user, and writes the audit log; failures are told, never fatal (a VM
/// going down goes down).
pub async fn take_back(state: &StateDir, record: &VmRecord) -> Handed {
    let nothing = Handed { guarded: false, complete: true, told: false };
    if record.started_unix.is_none() {
        return nothing;
    }
    let dir = state.vm_dir(&record.name);
    let failed = |e: &dyn std::fmt::Display| {
        eprintln!("hutch: warning: the guest's commits were not taken: {e}");
        Handed { guarded: true, complete: false, told: true }
    };
    let guard = match Guard::load(&dir) {
        Ok(Some(guard)) => guard,
        Ok(None) => return nothing,
        Err(e) => return failed(&e),
    };
    let _lock = match lock(&dir) {
        Ok(lock) => lock,
        Err(e) => return failed(&e),
    };
    let mut notes = guest_state_notes(&Target::Vm { state: state.clone(), record: Box::new(record.clone()) }, &guard).await;
    notes.extend(super::nested::notes(&guard));
    let source = Source::Vm(record.name.to_string());
    let repos = from_guard(&guard);
    let vm = record.name.to_string();
    let taken = tokio::task::spawn_blocking(move || take_all(&repos, &source, &vm)).await;
    let (mut reports, complete) = match taken {
        Ok(done) => done,
        Err(e) => return failed(&e),
    };
    let fresh = fresh_notes(&dir, notes);
    if !fresh.is_empty() {
        let mut general = RepoReport::new(&guard.workspace);
        general.notes = fresh;
        reports.push(general);
    }
    super::tell::tell(&reports, &guard.workspace, crate::audit::Log::for_vm_dir(&dir).as_ref());
    Handed { guarded: true, complete, told: reports.iter().any(|r| !r.is_empty()) }
}

/// Takes every repository of `repos` from `source`; returns the reports and
/// whether everything was taken (nothing to try again).
pub fn take_all(repos: &[Taken], source: &Source, vm: &str) -> (Vec<RepoReport>, bool) {
    let mut reports = Vec::new();
    let mut complete = true;
    for taken in repos {
        let worktree = taken.repo.worktree.clone().unwrap_or_else(|| taken.repo.gitdir.clone());
        match take_one(taken, source, vm) {
            Ok((report, retry)) => {
                complete &= !retry;
                reports.push(report);
            }
            Err(e) => {
                complete = false;
                let mut report = RepoReport::new(&worktree);
                report.notes.push(format!("the guest's commits were not taken: {e}"));
                reports.push(report);
            }
        }
    }
    (reports, complete)
}

/// Lists, fetches and applies one repository.
pub fn take_one(taken: &Taken, source: &Source, vm: &str) -> Result<(RepoReport, bool), GitError> {
    let worktree = taken.repo.worktree.clone().unwrap_or_else(|| taken.repo.gitdir.clone());
    let mut report = RepoReport::new(&worktree);
    let listed = bridged(&taken.repo, source, &taken.guest_gitdir, &["ls-remote", "--symref", &super::bridge::url()?], None)?;
    let guest = parse_listing(&listed, &taken.object_format, &mut report.refused);
    let host = apply::host_refs(&taken.repo)?;
    let candidates: Vec<GuestRef> = guest
        .refs
        .iter()
        .filter(|(r, oid)| host.get(&r.full()) != Some(*oid) && host.get(&r.kept(vm)) != Some(*oid))
        .map(|(r, _)| r.clone())
        .collect();
    if !candidates.is_empty() {
        let refspecs: String = candidates.iter().map(|r| format!("+{}:{}\n", r.full(), r.kept(vm))).collect();
        let args = [
            "-c",
            "transfer.fsckObjects=true",
            "-c",
            "fetch.fsckObjects=true",
            "-c",
            "fetch.recurseSubmodules=false",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--no-auto-gc",
            "--no-auto-maintenance",
            "--no-show-forced-updates",
            "--stdin",
            &super::bridge::url()?,
        ];
        bridged(&taken.repo, source, &taken.guest_gitdir, &args, Some(refspecs.as_bytes()))?;
    }
    let cx = Context { repo: &taken.repo, vm, seed: &taken.seed, shared_worktree: taken.shared_worktree };
    let retry = apply::apply(&cx, &guest, &candidates, &mut report)?;
    Ok((report, retry))
}

/// Runs host git with the bridge as its remote (`ext::`), `input` on its stdin.
fn bridged(repo: &Repo, source: &Source, guest_gitdir: &Path, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, GitError> {
    let mut full = vec!["-c", "protocol.ext.allow=always"];
    full.extend_from_slice(args);
    let mut cmd = repo.command(&full);
    cmd.env(super::bridge::ENV_GITDIR, guest_gitdir);
    match source {
        Source::Vm(name) => cmd.env(super::bridge::ENV_VM, name).env_remove(super::bridge::ENV_ADDR),
        Source::Addr(addr, token) => {
            cmd.env(super::bridge::ENV_ADDR, addr).env_remove(super::bridge::ENV_VM);
            if let Some(token) = token {
                cmd.env("HUTCH_TOKEN_FILE", token);
            }
            &mut cmd
        }
    };
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let out = match input {
        None => cmd.output().map_err(GitError::NoGit)?,
        Some(input) => {
            cmd.stdin(std::process::Stdio::piped());
            let mut child = cmd.spawn().map_err(GitError::NoGit)?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(input).map_err(GitError::io("writing to git fetch", &repo.gitdir))?;
            }
            child.wait_with_output().map_err(GitError::NoGit)?
        }
    };
    repo.checked(&full, out)
}

/// The guest's refs from `git ls-remote --symref`; names refused go into `refused`.
fn parse_listing(listed: &[u8], format: &str, refused: &mut Vec<Refused>) -> Guest {
    let mut guest = Guest { refs: Default::default(), head: GuestHead::Unknown };
    let mut head_oid = None;
    let mut head_symref = None;
    for line in String::from_utf8_lossy(listed).lines() {
        let Some((left, name)) = line.split_once('\t') else { continue };
        if let Some(target) = left.strip_prefix("ref: ") {
            if name == "HEAD" {
                head_symref = target.strip_prefix("refs/heads/").map(str::to_owned);
            }
            continue;
        }
        if !is_oid(left, format) {
            continue;
        }
        if name == "HEAD" {
            head_oid = Some(left.to_owned());
            continue;
        }
        if name.ends_with("^{}") {
            continue;
        }
        match GuestRef::parse(name) {
            Some(Ok(r)) => {
                guest.refs.insert(r, left.to_owned());
            }
            Some(Err(why)) => refused.push(Refused {
                name: crate::untrusted::text::shown_bytes(name.trim_start_matches("refs/heads/").as_bytes()).chars().take(80).collect(),
                why: format!("{why}: not taken"),
                kept: None,
            }),
            None => {}
        }
    }
    guest.head = match (head_symref, head_oid) {
        (Some(branch), _) if matches!(GuestRef::parse(&format!("refs/heads/{branch}")), Some(Ok(_))) => GuestHead::Branch(branch),
        (None, Some(oid)) => GuestHead::Detached(oid),
        _ => GuestHead::Unknown,
    };
    guest
}

/// What the guest's repositories hold that never reaches the host (its own
/// hooks, config, attributes; a repository where the host has none), from
/// the agent's `GitState`. Silent when the agent cannot say.
async fn guest_state_notes(target: &Target, guard: &Guard) -> Vec<String> {
    let Ok(mut client) = target.connect().await else { return Vec::new() };
    let Ok(Ok(state)) = tokio::time::timeout(std::time::Duration::from_secs(10), client.git_state(GitStateRequest {})).await else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    for repo in state.into_inner().repos.iter().take(crate::untrusted::limits::GIT_STATE_REPOS.max_usize()) {
        let at = crate::untrusted::text::shown_bytes(repo.worktree.as_bytes());
        let at = Path::new(&at).strip_prefix(&guard.workspace).map_or(at.clone(), |p| p.display().to_string());
        let at = if at.is_empty() { String::new() } else { format!(" at {at}") };
        let mut own = Vec::new();
        if !repo.hooks.is_empty() {
            let hooks: Vec<String> = repo.hooks.iter().map(|h| crate::untrusted::text::shown_bytes(h.as_bytes())).collect();
            own.push(format!("hooks ({})", hooks.join(", ")));
        }
        if repo.config_changed {
            own.push("configuration".to_owned());
        }
        if repo.attributes {
            own.push("info/attributes".to_owned());
        }
        if !own.is_empty() {
            notes.push(format!(
                "the guest's repository{at} has {} of its own: they stay in the VM and never run on the host",
                own.join(", ")
            ));
        }
        if repo.empty && repo.has_commits {
            notes.push(format!(
                "the guest made a repository{at}, where the host has none: its commits stay in the VM (the host's .git there is hutch's empty placeholder)"
            ));
        }
    }
    notes
}

/// The notes not given yet since this VM started (remembered in its folder).
fn fresh_notes(vm_dir: &Path, notes: Vec<String>) -> Vec<String> {
    let path = vm_dir.join(NOTED_FILE);
    let told: BTreeSet<String> = std::fs::read_to_string(&path).map(|t| t.lines().map(str::to_owned).collect()).unwrap_or_default();
    let fresh: Vec<String> = notes.into_iter().filter(|n| !told.contains(n)).collect();
    if !fresh.is_empty()
        && let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&path)
    {
        for note in &fresh {
            let _ = writeln!(file, "{note}");
        }
    }
    fresh
}

/// Forgets the notes and stamp of the last start (at every VM start).
pub fn reset(vm_dir: &Path) {
    let _ = std::fs::remove_file(vm_dir.join(NOTED_FILE));
    let _ = std::fs::remove_file(vm_dir.join(STAMP_FILE));
}

/// The VM's hand-back lock, held while the returned file is open.
fn lock(vm_dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, GitError> {
    let path = vm_dir.join(LOCK_FILE);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(GitError::io("creating", parent))?;
    }
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(GitError::io("opening", &path))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| GitError::io("locking", &path)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_refs_head_and_refusals() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let listed = format!(
            "ref: refs/heads/main\tHEAD\n{a}\tHEAD\n{a}\trefs/heads/main\n{b}\trefs/heads/bad..name\n{b}\trefs/tags/v1\n{a}\trefs/tags/v1^{{}}\n{b}\trefs/remotes/origin/main\nnot-an-oid\trefs/heads/x\n"
        );
        let mut refused = Vec::new();
        let guest = parse_listing(listed.as_bytes(), "sha1", &mut refused);
        assert_eq!(guest.head, GuestHead::Branch("main".into()));
        let names: Vec<String> = guest.refs.keys().map(GuestRef::full).collect();
        assert_eq!(names, ["refs/heads/main", "refs/tags/v1"]);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].name.contains("bad..name"));
        let detached = parse_listing(format!("{a}\tHEAD\n").as_bytes(), "sha1", &mut refused);
        assert_eq!(detached.head, GuestHead::Detached(a));
    }
}
