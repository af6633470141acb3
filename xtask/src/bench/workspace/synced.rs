//! The synced workspace's rows (`hutch up --sync`): a VM whose project folder
//! is the guest's own copy, kept in step with the host's by hutch's sync
//! process, booted from the same image as the shared rows.
//!
//! - **The six operations** of the section on the synced copy beside a plain
//!   copy on the same guest disk (`cp -a` of the synced copy), in turn, in the
//!   same VM: the ratio is what keeping the copy in step costs a command (the
//!   agent's watch, and for writes and deletes the batches streamed back to
//!   the host while the command runs). The goal is at most [`GOAL`]×. A sync
//!   leaves `.git` out, so the host's `.git` is put into the synced
//!   repository beforehand (the sync never watches or sends a `.git`), and
//!   `git status` has a repository on both sides.
//! - **The first copy** as `hutch up --sync` reports it (manifests, then a
//!   zstd tar of both trees), each run in a fresh VM, beside the same files
//!   piped through `tar` into the same guest (`tar c | hutch exec -- tar x`):
//!   what the copy costs over moving the bytes. There is no rsync-over-ssh
//!   anchor: the guest images have neither sshd nor rsync, so the bench has
//!   no ssh path into a guest; `cargo xtask bench-sync` times the same
//!   protocol against rsync over ssh on the host.
//! - **A small edit each way**, see [`super::edits`].
//! - **A batch with nothing changed**: the guest's time for a flush both
//!   ways (`hutch sync`) on both trees, goal under 50 ms every time.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::super::Plan;
use super::super::stats::Stats;
use super::super::table::{self, Goal, Table, Unit};
use super::{Guest, Section, edits, secs, times};
use crate::workspace::Result;

/// The transport the synced VM's figures carry: no share at all.
pub(super) const TRANSPORT: &str = "sync";
/// Each operation on the synced copy may take at most this factor of the
/// same on a plain copy on the guest's disk.
pub(super) const GOAL: f64 = 1.2;
/// A batch with nothing changed may cost the guest at most this (ms), every time.
const NO_CHANGE_GOAL_MS: f64 = 50.0;
/// The synced VM's name in its private state dir.
const VM: &str = "bench-ws-sync";
/// Where the first copy's anchor unpacks in the guest (its own disk).
const TAR_COPY: &str = "/var/tmp/hutch-bench-tar";
/// What `hutch up --sync` prints before its first copy's report.
const COPY_REPORT: &str = "hutch: synced workspace: ";

/// Measures the synced VM's rows into `section`: the operations' figures
/// join the section's (transport [`TRANSPORT`]), the first copy and the
/// edits go into its `sync` table. What fails becomes a note.
pub(super) fn measure(section: &mut Section, plan: &Plan, hutch: &Path, image: &Path, dir: &Path) {
    let mut table = Table::default();
    if let Err(e) = measure_into(section, &mut table, plan, hutch, image, dir) {
        table.note(format!("synced workspace rows stopped: {e}"));
    }
    section.sync = Some(table);
}

fn measure_into(section: &mut Section, table: &mut Table, plan: &Plan, hutch: &Path, image: &Path, dir: &Path) -> Result<()> {
    edits::prepare(dir)?;
    // Both the first copy and its anchor read the host's files from its page cache.
    drain(tar_of(dir, &["--exclude=.git", "."])?)?;
    let (mut copies, mut tars, mut report) = (Vec::new(), Vec::new(), String::new());
    let mut guest = None;
    for _ in 0..plan.workspace_runs {
        // `hutch rm -f` of the last VM first: each copy is a first one.
        drop(guest.take());
        let booted = Guest::up_as(hutch, image, dir, TRANSPORT, VM, &["--sync"])?;
        let (ms, line) = first_copy(&booted.up_log)?;
        copies.push(ms);
        report = line;
        tars.push(tar_copy_ms(&booted, dir)?);
        guest = Some(booted);
    }
    let guest = guest.ok_or("no first copy was timed")?;
    let copy = Stats::of(copies).ok_or("no samples")?;
    table.figure("sync_first_copy", "first copy: hutch up --sync of both trees (hutch's own report)", Unit::Ms, copy.clone(), None);
    let tar = Stats::of(tars).ok_or("no samples")?;
    table.anchor("sync_first_copy.tar", "the same files, tar c | hutch exec -- tar x into the same guest", &copy, tar, Unit::Ms);
    table.note(format!("first copy, the last run: {report}"));
    table.note(
        "first copy: no rsync-over-ssh anchor: the guest images have neither sshd nor rsync, so there is no ssh path into \
         the guest; `cargo xtask bench-sync` times the same protocol against rsync over ssh on the host",
    );

    if let Err(e) = edits::measure(table, plan, &guest, dir) {
        table.note(format!("edit latency rows stopped: {e}"));
    }
    if let Err(e) = no_change_batch(table, plan, &guest) {
        table.note(format!("the no-change batch row stopped: {e}"));
    }
    let measured = seed_git(&guest, dir).and_then(|()| guest.measure(section, &["repo", "tree"]));
    if let Err(e) = measured {
        section.notes.push(format!("{TRANSPORT} rows skipped: {e}"));
    }
    Ok(())
}

/// A batch with nothing in it, on both trees: `hutch sync --json` (a flush
/// both ways) with nothing changed, timed by the agent itself (its
/// `WatchFlushed.guest_us`: finding what changed since the last batch,
/// which its inotify-backed manifest answers without a walk).
fn no_change_batch(table: &mut Table, plan: &Plan, guest: &Guest) -> Result<()> {
    let mut samples = Vec::new();
    for _ in 0..plan.sync_edits {
        let out = guest.hutch(&["sync", "--json", "--name", guest.name()]).output()?;
        if !out.status.success() {
            return Err(format!("`hutch sync` failed: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
        }
        let flushed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        if flushed["pushed"] != 0 || flushed["received"] != 0 {
            return Err(format!("a flush with nothing changed moved something: {flushed}").into());
        }
        let us = flushed["guest_us"].as_u64().ok_or_else(|| format!("no guest_us in {flushed}"))?;
        samples.push(us as f64 / 1000.0);
    }
    let stats = Stats::of(samples).ok_or("no samples")?;
    let goal = Goal { text: format!("< {NO_CHANGE_GOAL_MS} ms"), met: stats.max < NO_CHANGE_GOAL_MS };
    table.figure(
        "sync_no_change_batch",
        "a batch with nothing changed, both trees: the guest's time (hutch sync; the agent's own figure)",
        Unit::Ms,
        stats,
        Some(goal),
    );
    Ok(())
}

/// The first copy's duration (ms) and report line, from what `hutch up
/// --sync` printed ("hutch: synced workspace: copied N entries (…), in 12.34 s").
fn first_copy(up_log: &str) -> Result<(f64, String)> {
    let line = up_log
        .split(['\n', '\r'])
        .find_map(|l| l.split_once(COPY_REPORT).map(|(_, report)| report.trim()))
        .ok_or_else(|| format!("`hutch up --sync` reported no first copy: {:?}", up_log.trim()))?;
    let secs = line
        .strip_prefix("copied ")
        .and_then(|l| l.rsplit_once(" in "))
        .and_then(|(_, took)| took.strip_suffix(" s"))
        .and_then(|took| took.parse::<f64>().ok())
        .ok_or_else(|| format!("`hutch up --sync` made no fresh copy: {line:?}"))?;
    Ok((secs * 1000.0, line.to_owned()))
}

/// The first copy's anchor: the same files (`.git` left out, as the sync
/// does) piped through `tar` into a fresh folder of the guest's disk; wall
/// time on the host.
fn tar_copy_ms(guest: &Guest, dir: &Path) -> Result<f64> {
    guest.sh("rm -rf \"$1\" && mkdir -p \"$1\"", &[TAR_COPY])?;
    let began = Instant::now();
    untar_in_guest(guest, tar_of(dir, &["--exclude=.git", "."])?, TAR_COPY)?;
    let ms = began.elapsed().as_secs_f64() * 1000.0;
    guest.sh("rm -rf \"$1\"", &[TAR_COPY])?;
    Ok(ms)
}

/// Puts the host's `.git` of the repository into its synced copy, which a
/// sync leaves without one.
fn seed_git(guest: &Guest, dir: &Path) -> Result<()> {
    let repo = dir.join("repo");
    if !repo.join(".git").exists() {
        return Ok(()); // `Guest::measure` skips the git rows
    }
    untar_in_guest(guest, tar_of(&repo, &[".git"])?, &format!("{}/repo", guest.workspace))
}

/// `tar -c ARGS` run in `from` on the host, writing the archive to a pipe.
fn tar_of(from: &Path, args: &[&str]) -> Result<Child> {
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg(from).args(["-cf", "-"]).args(args);
    Ok(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?)
}

/// Unpacks what `tar` writes into the guest's folder `into`.
fn untar_in_guest(guest: &Guest, mut tar: Child, into: &str) -> Result<()> {
    let archive = tar.stdout.take().ok_or("no archive from tar")?;
    let untar = guest.hutch(&["exec", "--name", guest.name(), "--", "tar", "-xf", "-", "-C", into]).stdin(archive).status();
    let (tarred, untar) = (tar.wait()?, untar?);
    if !tarred.success() || !untar.success() {
        return Err(format!("copying into the guest's {into} failed (tar on the host: {tarred}, in the guest: {untar})").into());
    }
    Ok(())
}

/// Reads what `tar` writes to the end (the host's files into its page cache).
fn drain(mut tar: Child) -> Result<()> {
    std::io::copy(&mut tar.stdout.take().ok_or("no archive from tar")?, &mut std::io::sink())?;
    let status = tar.wait()?;
    if !status.success() {
        return Err(format!("tar of the bench folder failed: {status}").into());
    }
    Ok(())
}

/// Prints the synced VM's tables: one line per operation and tree (the
/// synced copy, the plain copy, the ratio), then the first copy and edits.
pub(super) fn print(section: &Section) {
    let Some(table) = &section.sync else { return };
    println!();
    println!(
        "synced workspace (hutch up --sync): the synced copy ÷ a copy on the same guest's own disk, same VM and run \
         (QEMU, 1 vCPU; medians of {} runs for the repository, {} for the 30k tree; seconds)",
        section.runs.0, section.runs.1
    );
    let lines: Vec<Vec<String>> = section
        .figures
        .iter()
        .filter(|f| f.transport == TRANSPORT)
        .map(|f| vec![f.name(), secs(f.share.median), secs(f.local.median), times(f.ratio()), f.goal_text()])
        .collect();
    if lines.is_empty() {
        println!("(no operation was timed on the synced copy: see the notes)");
    } else {
        table::print_columns(&["operation", "synced", "local", "÷", "goal"], lines, |i| (1..=3).contains(&i), &[]);
    }
    println!();
    println!("synced workspace: its first copy, and a small edit each way while a command runs (same VM)");
    table.print();
}

#[cfg(test)]
mod tests {
    use super::first_copy;

    #[test]
    fn the_first_copy_is_read_from_the_report_line() {
        let log = "progress 10%\rhutch: synced workspace: copied 35003 entries (272.1 MB, 190.0 MB compressed), deleted 0, in 31.25 s\n";
        let (ms, line) = first_copy(log).unwrap();
        assert!((ms - 31_250.0).abs() < 1e-6, "{ms}");
        assert!(line.starts_with("copied 35003 entries"), "{line}");
        assert!(first_copy("hutch: synced workspace: up to date (3 entries, 2 ms)\n").is_err());
        assert!(first_copy("").is_err());
    }
}
