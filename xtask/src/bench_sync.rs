//! `cargo xtask bench-sync`: `--ro` snapshot sync beside rsync, in one run.
//!
//! A deterministic (seeded) tree of 30k files / ~190 MB under
//! `target/bench-sync/tree` is copied by `hutch sync` into a local agent's
//! snapshot (release build, Unix socket, the agent writing under a private
//! prefix; [`hutch_tests::agent`]), by `rsync -a` locally, and by `rsync -a`
//! over ssh to a throw-away sshd on 127.0.0.1 ([`hutch_tests::sshd`]; skipped
//! with a note when rsync or sshd is missing). Rows:
//! the initial copy, a no-change re-sync, and a re-sync after 10 files change.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use hutch_tests::agent::{Agent, AgentOptions};
use hutch_tests::sshd::{SSHD, Sshd, SshdError};
use serde_json::{Value, json};

use crate::workspace::{Result, build_bins, root};

/// Files in the generated tree.
const FILES: usize = 30_000;
/// Files per folder.
const PER_DIR: usize = 100;

/// A seeded tree of files, the same on every run: `m??/pkg???/f???.{rs,bin}`.
pub struct TreeSpec {
    /// How many files.
    pub files: usize,
    /// Files per folder.
    pub per_dir: usize,
    /// Seed of the names' sizes and the contents.
    pub seed: u64,
    /// Smallest size of the common (source-sized) files, and the range above it.
    pub small: (u64, u64),
}

/// The sync bench's tree: 30k files / ~190 MB (also used by `cargo xtask bench`'s
/// workspace section).
pub const SYNC_TREE: TreeSpec = TreeSpec { files: FILES, per_dir: PER_DIR, seed: 0x5eed_2026, small: (800, 8_000) };

/// Runs the sync benchmark, prints its table and returns the figures.
pub fn run(quick: bool) -> Result<Value> {
    let (hutch, agent_bin) = build_bins("release")?;
    let base = root().join("target/bench-sync");
    let tree = base.join("tree");
    let bytes = generate(&tree, &SYNC_TREE)?;
    let scratch = tempfile::Builder::new().prefix("hutch-bench-sync-").tempdir_in(&base)?;
    let scratch_path = scratch.path().to_owned();
    // A release agent writing snapshots under `<scratch>/guest`; the scratch
    // folder lives (and goes) with it.
    let guest = scratch_path.join("guest");
    let addr = format!("unix://{}", scratch_path.join("agent.sock").display());
    let extra = ["--snapshot-prefix", guest.to_str().ok_or("a scratch path that is not UTF-8")?];
    let agent = Agent::launch(Command::new(&agent_bin), scratch, addr, AgentOptions { extra: &extra, ..AgentOptions::default() })?;
    let scratch = agent.dir.path();
    let tree = tree.canonicalize()?;
    let snapshot = guest.join(tree.strip_prefix("/")?);
    let sync = || -> Result<f64> {
        let begin = Instant::now();
        let status =
            Command::new(&hutch).args(["sync", "-q", "--addr", &agent.addr, "--workspace"]).arg(&tree).stdin(Stdio::null()).status()?;
        if !status.success() {
            return Err(format!("hutch sync failed: {status}").into());
        }
        Ok(begin.elapsed().as_secs_f64() * 1000.0)
    };
    let runs = if quick { 1 } else { 3 };
    let repeats = if quick { 5 } else { 15 };
    println!("hutch bench-sync: {FILES} files, {:.0} MB, release build, local agent on a Unix socket\n", bytes as f64 / 1e6);

    let mut initial = Vec::new();
    for _ in 0..runs {
        remove(&snapshot)?;
        let _ = std::fs::remove_dir_all(scratch.join("state"));
        initial.push(sync()?);
    }
    let no_change: Vec<f64> = (0..repeats).map(|_| sync()).collect::<Result<_>>()?;
    let mut ten = Vec::new();
    for round in 0..repeats {
        touch_ten(&tree, round)?;
        ten.push(sync()?);
    }

    let rsync = Rsync::find();
    let local_dest = scratch.join("rsync-local");
    let mut local_initial = Vec::new();
    let mut local_nochange = Vec::new();
    let mut ssh_initial = Vec::new();
    let mut ssh_nochange = Vec::new();
    let mut notes = Vec::new();
    if let Some(rsync) = &rsync {
        for _ in 0..runs {
            remove(&local_dest)?;
            local_initial.push(rsync.copy(&tree, &local_dest.display().to_string(), None)?);
        }
        for _ in 0..repeats.min(5) {
            local_nochange.push(rsync.copy(&tree, &local_dest.display().to_string(), None)?);
        }
        match Sshd::builder().log_level("INFO").dir_in(scratch).start() {
            Ok(sshd) => {
                let ssh_dest = scratch.join("rsync-ssh");
                let remote = format!("{}:{}", sshd.destination(), ssh_dest.display());
                for _ in 0..runs {
                    remove(&ssh_dest)?;
                    ssh_initial.push(rsync.copy(&tree, &remote, Some(&sshd.rsync_shell()))?);
                }
                for _ in 0..repeats.min(5) {
                    ssh_nochange.push(rsync.copy(&tree, &remote, Some(&sshd.rsync_shell()))?);
                }
            }
            Err(SshdError::Missing) => notes.push(format!("rsync over ssh skipped: no {SSHD} (apt-get install openssh-server)")),
            Err(e) => notes.push(format!("rsync over ssh skipped: {e}")),
        }
    } else {
        notes.push("rsync not installed: rsync rows skipped (apt-get install rsync openssh-server)".into());
    }

    let (hi, hn, ht) = (median(&initial), median(&no_change), median(&ten));
    println!("{:<34} {:>12} {:>14} {:>14}", "figure (median ms)", "hutch sync", "rsync local", "rsync ssh");
    let cell = |v: &[f64]| if v.is_empty() { "-".to_owned() } else { format!("{:.1}", median(v)) };
    println!("{:<34} {:>12.1} {:>14} {:>14}", "initial copy", hi, cell(&local_initial), cell(&ssh_initial));
    println!("{:<34} {:>12.1} {:>14} {:>14}", "no-change re-sync (goal <= 150)", hn, cell(&local_nochange), cell(&ssh_nochange));
    println!("{:<34} {:>12.1} {:>14} {:>14}", "10 files changed (goal < 200)", ht, "-", "-");
    if !ssh_initial.is_empty() {
        println!("\ninitial copy: hutch is {:.2}x faster than rsync over ssh (goal >= 1.3x)", median(&ssh_initial) / hi);
    }
    for note in &notes {
        println!("note: {note}");
    }
    drop(agent);
    Ok(json!({
        "files": FILES, "bytes": bytes,
        "hutch_ms": { "initial": hi, "no_change": hn, "ten_files": ht },
        "rsync_local_ms": { "initial": opt_median(&local_initial), "no_change": opt_median(&local_nochange) },
        "rsync_ssh_ms": { "initial": opt_median(&ssh_initial), "no_change": opt_median(&ssh_nochange) },
        "notes": notes,
    }))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn opt_median(v: &[f64]) -> Value {
    if v.is_empty() { Value::Null } else { json!(median(v)) }
}

/// Removes `path` and everything under it; a missing path is fine.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// xorshift64, for a tree that is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes the tree once (kept across runs); returns its size in bytes.
pub fn generate(tree: &Path, spec: &TreeSpec) -> Result<u64> {
    let marker = tree.join(".generated");
    let words = [
        "fn", "let", "mut", "self", "impl", "struct", "return", "match", "Some", "None", "Ok", "Err", "=>", "{", "}", "(", ")", ";",
        "value", "index", "buffer", "path", "error", "result",
    ];
    let mut rng = Rng(spec.seed);
    let mut plan = Vec::with_capacity(spec.files);
    let mut total = 0u64;
    for i in 0..spec.files {
        let r = rng.next();
        // Mostly source-sized files, a few larger ones, some binary.
        let size = if r.is_multiple_of(20) { 20_000 + (r >> 8) % 60_000 } else { spec.small.0 + (r >> 8) % spec.small.1 } as usize;
        let binary = (r >> 40).is_multiple_of(5);
        plan.push((i, size, binary));
        total += size as u64;
    }
    if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == total.to_string()) {
        return Ok(total);
    }
    remove(tree)?;
    println!("generating {} files ({:.0} MB) under {} ...", spec.files, total as f64 / 1e6, tree.display());
    let per_dir = spec.per_dir;
    for (i, size, binary) in plan {
        let dir = tree.join(format!("m{:02}/pkg{:03}", i / (per_dir * 30), (i / per_dir) % 30));
        if i % per_dir == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let mut data = Vec::with_capacity(size + 16);
        while data.len() < size {
            let r = rng.next();
            if binary {
                data.extend_from_slice(&r.to_le_bytes());
            } else {
                data.extend_from_slice(words[(r % words.len() as u64) as usize].as_bytes());
                data.push(if r.is_multiple_of(11) { b'\n' } else { b' ' });
            }
        }
        data.truncate(size);
        std::fs::write(dir.join(format!("f{:03}.{}", i % per_dir, if binary { "bin" } else { "rs" })), data)?;
    }
    std::fs::write(&marker, total.to_string())?;
    Ok(total)
}

/// Rewrites 10 files spread over the tree (different ones each round).
fn touch_ten(tree: &Path, round: usize) -> Result<()> {
    for k in 0..10 {
        let i = (round * 10 + k) * 2_999 % FILES;
        let path = tree.join(format!("m{:02}/pkg{:03}/f{:03}.rs", i / (PER_DIR * 30), (i / PER_DIR) % 30, i % PER_DIR));
        std::fs::write(&path, format!("changed in round {round}, file {k}\n"))?;
    }
    Ok(())
}

/// The rsync binary.
struct Rsync(PathBuf);

impl Rsync {
    fn find() -> Option<Rsync> {
        ["/usr/bin/rsync", "/usr/local/bin/rsync", "/opt/homebrew/bin/rsync"].iter().map(PathBuf::from).find(|p| p.exists()).map(Rsync)
    }

    /// `rsync -a --delete tree/ dest/`, timed.
    fn copy(&self, tree: &Path, dest: &str, ssh: Option<&str>) -> Result<f64> {
        let mut cmd = Command::new(&self.0);
        cmd.args(["-a", "--delete"]);
        if let Some(ssh) = ssh {
            cmd.args(["-e", ssh]);
        }
        cmd.arg(format!("{}/", tree.display())).arg(format!("{dest}/")).stdin(Stdio::null());
        let begin = Instant::now();
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(format!("rsync failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(begin.elapsed().as_secs_f64() * 1000.0)
    }
}
