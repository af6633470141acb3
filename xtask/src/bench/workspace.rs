//! The "workspace in the guest" section: what the shared workspace costs a
//! command in the guest, as the ratio of the same command on the share and on
//! a copy of the same files on the guest's own disk, in the same VM and the
//! same run (TCG makes both slow; the ratio is the share's own cost).
//!
//! Two seeded trees under `target/bench-workspace`: a git repository of 5,000
//! files / ~60 MB and the 30k-file tree of the sync bench. Operations: `find`,
//! `git status`, reading every file, a search (`rg`, else `grep -r`), writing
//! 500 small files and deleting them. A guest without a tool gets a note
//! instead of its row. The same operations run over 9p in a second VM, so the
//! gain of virtio-fs is visible; 9p covers the repository only (the 30k tree
//! takes many minutes over 9p under TCG). A third VM works on a synced copy
//! (`hutch up --sync`) of both trees: the same operations on that copy
//! beside a copy on its own disk, its first copy and the latency of a small
//! edit each way ([`synced`]).
//!
//! Timing is done in the guest (`/proc/timer_list`, nanoseconds; else
//! `/proc/uptime`), so the exec round trip is not part of any figure.

mod edits;
mod synced;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::Plan;
use super::exec::run_ok;
use super::stats::Stats;
use super::table::{self, Table};
use crate::bench_sync::{self, SYNC_TREE, TreeSpec};
use crate::workspace::{Result, target_dir};

/// The repository: 5,000 files of mostly 2–18 KB (~60 MB), as in issue 17.
const REPO: TreeSpec = TreeSpec { files: 5_000, per_dir: 50, seed: 0x5eed_0017, small: (2_000, 16_000) };
/// A string planted in three files of each tree: the search reads every file
/// to the end and finds three lines.
const NEEDLE: &str = "hutch-bench-needle";
/// The VM's name in the bench's private state dir.
const VM: &str = "bench-ws";
/// Where the guest keeps its own copy (on its root file system: RAM for the
/// busybox image, the disk for disk images).
const LOCAL: &str = "/var/tmp/hutch-bench";
/// The guest's memory: both copies and the share's page cache fit.
const MEMORY_MIB: &str = "2048";
/// Read-side operations are meant to cost at most this factor on the share.
const READ_GOAL: f64 = 2.0;
/// Writes and deletes, at most this factor.
const WRITE_GOAL: f64 = 3.0;

/// Runs one step in a folder of the guest and prints its duration in
/// nanoseconds: `sh -c TIMED sh DIR STEP`.
const TIMED: &str = r#"now() {
  t=$(grep -m1 'now at' /proc/timer_list 2>/dev/null)
  if [ -n "$t" ]; then t=${t#now at }; echo "${t%% *}"
  else read -r u _ < /proc/uptime; echo $(( ${u%.*} * 1000000000 + 1${u#*.} * 10000000 - 1000000000 )); fi
}
cd "$1" || exit 1
t0=$(now)
eval "$2" || exit $?
t1=$(now)
echo $(( t1 - t0 ))"#;

/// One operation: the steps timed one after the other in each run (writing
/// is followed by deleting what was written).
struct Operation {
    /// What the table says when a tool is missing.
    label: &'static str,
    /// The guest program it needs besides busybox's.
    needs: Option<&'static str>,
    /// Shell steps, each timed on its own: key, label, script. `{search}`
    /// in a label or script is the search command the guest has, `{needle}`
    /// the planted string.
    steps: &'static [(&'static str, &'static str, &'static str)],
    /// Whether the first run is untimed (git refreshes its index the first
    /// time it sees a copy's inode numbers).
    warm_up: bool,
    /// The share ÷ local factor the issue asks for.
    goal: f64,
}

const OPERATIONS: &[Operation] = &[
    Operation {
        label: "find",
        needs: None,
        steps: &[("find", "find . -type f", "find . -type f >/dev/null")],
        warm_up: false,
        goal: READ_GOAL,
    },
    Operation {
        label: "git status",
        needs: Some("git"),
        steps: &[("git_status", "git status --porcelain", "git status --porcelain >/dev/null")],
        warm_up: true,
        goal: READ_GOAL,
    },
    Operation {
        label: "read every file",
        needs: None,
        steps: &[("read_all", "read every file (cat)", "find . -type f -print0 | xargs -0 cat >/dev/null")],
        warm_up: false,
        goal: READ_GOAL,
    },
    Operation {
        label: "search",
        needs: None,
        steps: &[("search", "search ({search} -F)", "{search} -n -F {needle} . >/dev/null")],
        warm_up: false,
        goal: READ_GOAL,
    },
    Operation {
        label: "write, delete",
        needs: None,
        steps: &[
            (
                "write_500",
                "write 500 small files",
                "mkdir .hutch-bench-w && i=0 && while [ $i -lt 500 ]; do echo \"file $i\" > .hutch-bench-w/f$i; i=$((i+1)); done",
            ),
            ("delete_500", "delete those 500 files", "rm -r .hutch-bench-w"),
        ],
        warm_up: false,
        goal: WRITE_GOAL,
    },
];

/// One figure: a step on one tree over one transport.
struct Figure {
    tree: &'static str,
    step: &'static str,
    label: String,
    transport: &'static str,
    share: Stats,
    local: Stats,
    goal: f64,
}

impl Figure {
    fn ratio(&self) -> f64 {
        self.share.median / self.local.median
    }

    /// Whether the ratio met its goal, and the goal ("yes ≤ 2×").
    fn goal_text(&self) -> String {
        format!("{} ≤ {}×", if self.ratio() <= self.goal { "yes" } else { "NO " }, self.goal)
    }

    /// The operation and its tree, as the tables name them.
    fn name(&self) -> String {
        format!("{} ({})", self.label, if self.tree == "repo" { "5k repo" } else { "30k tree" })
    }
}

/// The section's figures and notes, printed after the main table.
#[derive(Default)]
pub struct Section {
    /// Every operation's figure; those of the synced VM have the transport
    /// [`synced::TRANSPORT`] (their "share" is the synced copy).
    figures: Vec<Figure>,
    notes: Vec<String>,
    runs: (usize, usize),
    /// The synced VM's first copy and edit latencies (see [`synced`]).
    sync: Option<Table>,
}

/// Measures the section with the `hutch` CLI at `hutch`: virtio-fs, then 9p,
/// then a synced copy, each in its own VM; only the transports in `only`
/// (`virtiofs`, `9p`, `sync`) when it names any.
pub fn measure(plan: &Plan, hutch: &Path, only: &[String]) -> Result<Section> {
    let wanted = |transport: &str| only.is_empty() || only.iter().any(|o| o == transport);
    let mut section = Section { runs: (plan.workspace_runs, 1), ..Section::default() };
    let Some(image) = guest_image() else {
        section.notes.push("workspace rows skipped: no guest image under target/hutch-image (run `cargo xtask image`)".into());
        return Ok(section);
    };
    section.notes.push(format!("guest image: {}", image.display()));
    let dir = target_dir().join("bench-workspace");
    prepare(&dir, &mut section.notes)?;
    let dir = dir.canonicalize()?;
    for (transport, trees) in [("virtiofs", &["repo", "tree"][..]), ("9p", &["repo"][..])] {
        if !wanted(transport) {
            continue;
        }
        let measured = Guest::up(hutch, &image, &dir, transport).and_then(|guest| guest.measure(&mut section, trees));
        if let Err(e) = measured {
            section.notes.push(format!("{transport} rows skipped: {e}"));
        }
    }
    if wanted(synced::TRANSPORT) {
        synced::measure(&mut section, plan, hutch, &image, &dir);
    }
    Ok(section)
}

/// The image the rows run in: the Debian default (`cargo xtask image`'s, else
/// the e2e suite's build of it), whose VM-local copy is on its disk as a
/// user's would be; else the minimal one (the copy in RAM).
fn guest_image() -> Option<PathBuf> {
    let images = target_dir().join("hutch-image");
    ["default", "e2e-default", "minimal"].into_iter().map(|name| images.join(name)).find(|dir| dir.join("image.json").exists())
}

/// Generates both trees once (kept across runs), plants the needle and
/// commits the repository.
fn prepare(dir: &Path, notes: &mut Vec<String>) -> Result<()> {
    for (name, spec) in [("repo", &REPO), ("tree", &SYNC_TREE)] {
        let tree = dir.join(name);
        bench_sync::generate(&tree, spec)?;
        // Inside the tree: gone whenever `generate` writes it anew.
        let marker = tree.join(".hutch-bench-prepared");
        if marker.exists() {
            continue;
        }
        for k in 0..3 {
            let dir = tree.join(format!("m00/pkg{k:03}"));
            let mut sources: Vec<_> =
                std::fs::read_dir(&dir)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "rs")).collect();
            sources.sort();
            let file = sources.first().ok_or_else(|| format!("no .rs file in {}", dir.display()))?;
            let mut text = std::fs::read(file)?;
            text.extend_from_slice(format!("\n// {NEEDLE}\n").as_bytes());
            std::fs::write(file, text)?;
        }
        if name == "repo"
            && let Err(e) = commit(&tree)
        {
            notes.push(format!("the repository is not a git repository (git on the host: {e}): git status rows skipped"));
            bench_sync::remove(&tree.join(".git"))?;
        }
        std::fs::write(&marker, "")?;
    }
    Ok(())
}

/// The seeded 5k-file repository at `dir` (generated once, then kept),
/// committed and packed.
pub(super) fn seeded_repo(dir: &Path) -> Result<()> {
    bench_sync::generate(dir, &REPO)?;
    let marker = dir.join(".hutch-bench-prepared");
    if !marker.exists() {
        commit(dir)?;
        std::fs::write(&marker, "")?;
    }
    Ok(())
}

/// The image the guest rows run in (see [`guest_image`]).
pub(super) fn image() -> Option<PathBuf> {
    guest_image()
}

/// `git init`, add everything, commit and pack, as a checked-out clone is.
fn commit(tree: &Path) -> Result<()> {
    bench_sync::remove(&tree.join(".git"))?;
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.current_dir(tree).args(["-c", "user.name=hutch bench", "-c", "user.email=bench@hutch.invalid"]);
        cmd.args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]).args(args);
        run_ok(cmd.stdout(Stdio::null()).stderr(Stdio::null()))
    };
    git(&["init", "-q"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "seed"])?;
    git(&["gc", "-q"])
}

/// A bench VM sharing the bench folder over one transport; removed on drop.
pub(super) struct Guest {
    hutch: std::path::PathBuf,
    image: std::path::PathBuf,
    state: tempfile::TempDir,
    /// The shared folder (the same path in the guest).
    pub(super) workspace: String,
    transport: &'static str,
    name: &'static str,
    /// What `hutch up` printed on stderr (a synced VM's first-copy report).
    up_log: String,
}

impl Guest {
    /// Boots the VM and checks the share is mounted over `transport`.
    fn up(hutch: &Path, image: &Path, dir: &Path, transport: &'static str) -> Result<Guest> {
        Guest::up_as(hutch, image, dir, transport, VM, &[])
    }

    /// Boots the VM `name` with `extra` flags for `hutch up`, and checks the
    /// share is mounted over `transport` ([`synced::TRANSPORT`]: that nothing
    /// is mounted there, the folder being the guest's synced copy).
    pub(super) fn up_as(
        hutch: &Path,
        image: &Path,
        dir: &Path,
        transport: &'static str,
        name: &'static str,
        extra: &[&str],
    ) -> Result<Guest> {
        let workspace = dir.to_str().ok_or("the bench folder's path is not UTF-8")?.to_owned();
        // A short path: Unix socket paths are limited to 107 bytes.
        let state = tempfile::Builder::new().prefix("hbenchws").tempdir_in("/tmp")?;
        let mut guest =
            Guest { hutch: hutch.to_path_buf(), image: image.to_path_buf(), state, workspace, transport, name, up_log: String::new() };
        let mut up = vec!["up", "--name", name, "--workspace", &guest.workspace, "--no-heavy", "--cpus", "1", "--memory", MEMORY_MIB];
        up.extend_from_slice(extra);
        let out = guest.hutch(&up).output()?;
        if !out.status.success() {
            return Err(format!("`hutch up` failed: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
        }
        guest.up_log = String::from_utf8_lossy(&out.stderr).into_owned();
        let fstype = guest.sh("awk -v ws=\"$1\" '$2 == ws { print $3 }' /proc/mounts", &[&guest.workspace])?;
        match (fstype.trim(), transport) {
            ("", synced::TRANSPORT) => {}
            (mounted, synced::TRANSPORT) => {
                return Err(format!("the synced workspace is a {mounted} mount, not the guest's own copy").into());
            }
            (mounted, _) if mounted != transport => return Err(format!("the workspace is mounted as {mounted:?}, not {transport}").into()),
            _ => {}
        }
        Ok(guest)
    }

    /// The VM's name.
    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    /// `hutch ARGS` for this VM's private state.
    pub(super) fn hutch(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.hutch);
        cmd.args(args).env("HUTCH_STATE_DIR", self.state.path()).env("HUTCH_IMAGE", &self.image);
        if self.transport != synced::TRANSPORT {
            cmd.env("HUTCH_QEMU_SHARE", self.transport);
        }
        cmd.env_remove("HUTCH_ADDR").stdin(Stdio::null());
        cmd
    }

    /// Runs `sh -c SCRIPT sh ARGS…` in the guest; its stdout.
    pub(super) fn sh(&self, script: &str, args: &[&str]) -> Result<String> {
        let mut all = vec!["exec", "--name", self.name, "--", "sh", "-c", script, "sh"];
        all.extend_from_slice(args);
        let out = self.hutch(&all).stderr(Stdio::inherit()).output()?;
        if !out.status.success() {
            return Err(format!("`{script}` in the guest failed: {}", out.status).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `step` run in `dir`, timed by the guest; milliseconds.
    pub(super) fn timed(&self, dir: &str, step: &str) -> Result<f64> {
        let out = self.sh(TIMED, &[dir, step])?;
        let ns: f64 = out.trim().parse().map_err(|_| format!("the guest's timing said {:?}", out.trim()))?;
        Ok(ns / 1e6)
    }

    /// Copies `trees` to the guest's disk and times every operation on the
    /// share (or the synced copy) and on the guest's own copy, in turn.
    fn measure(&self, section: &mut Section, trees: &[&'static str]) -> Result<()> {
        let tools = self.sh("for t in git rg; do command -v $t >/dev/null && echo $t; done; true", &[])?;
        let has = |tool: &str| tools.lines().any(|l| l == tool);
        let search = if has("rg") { "rg" } else { "grep -r" };
        let sources: Vec<String> = trees.iter().map(|t| format!("{}/{t}", self.workspace)).collect();
        let mut copy = vec![LOCAL];
        copy.extend(sources.iter().map(String::as_str));
        self.sh("dest=$1; shift; rm -rf \"$dest\" && mkdir -p \"$dest\" && cp -a \"$@\" \"$dest\"/", &copy)?;
        for &tree in trees {
            let runs = if tree == "repo" { section.runs.0 } else { section.runs.1 };
            let share = format!("{}/{tree}", self.workspace);
            let local = format!("{LOCAL}/{tree}");
            for op in OPERATIONS {
                if let Some(tool) = op.needs {
                    if !has(tool) {
                        section.notes.push(format!("{}: no {tool} in the guest image: `{}` rows skipped", self.transport, op.label));
                        continue;
                    }
                    if !Path::new(&share).join(".git").exists() {
                        continue; // the 30k tree is no git repository
                    }
                }
                let mut samples = vec![(Vec::new(), Vec::new()); op.steps.len()];
                for run in 0..runs + usize::from(op.warm_up) {
                    // Share and copy in turn, so both see the same machine.
                    for (side, dir) in [&share, &local].into_iter().enumerate() {
                        for (i, (_, _, script)) in op.steps.iter().enumerate() {
                            let ms = self.timed(dir, &script.replace("{search}", search).replace("{needle}", NEEDLE))?;
                            if run >= usize::from(op.warm_up) {
                                if side == 0 { samples[i].0.push(ms) } else { samples[i].1.push(ms) }
                            }
                        }
                    }
                }
                for ((step, label, _), (share_ms, local_ms)) in op.steps.iter().zip(samples) {
                    section.figures.push(Figure {
                        tree,
                        step,
                        label: label.replace("{search}", search),
                        transport: self.transport,
                        share: Stats::of(share_ms).ok_or("no samples")?,
                        local: Stats::of(local_ms).ok_or("no samples")?,
                        goal: if self.transport == synced::TRANSPORT { synced::GOAL } else { op.goal },
                    });
                }
            }
        }
        Ok(())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.hutch(&["rm", "-f", self.name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

impl Section {
    /// Prints the section as its own table: one line per operation and tree,
    /// virtio-fs and 9p side by side; then the synced VM's tables.
    pub fn print(&self) {
        if !self.figures.iter().any(|f| f.transport != synced::TRANSPORT) {
            // `--only sync`: no shared workspace was measured.
            for note in &self.notes {
                println!("note: {note}");
            }
            synced::print(self);
            return;
        }
        println!(
            "workspace in the guest: the share ÷ a copy on the guest's own disk, same VM and run (QEMU, 1 vCPU; \
             medians of {} runs for the repository, {} for the 30k tree; seconds)",
            self.runs.0, self.runs.1
        );
        let header = ["operation", "virtiofs", "local", "÷", "9p", "local", "÷", "goal (virtiofs)"];
        let mut lines = Vec::new();
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for figure in self.figures.iter().filter(|f| f.transport != synced::TRANSPORT) {
            if seen.contains(&(figure.tree, figure.step)) {
                continue;
            }
            seen.push((figure.tree, figure.step));
            let find =
                |transport: &str| self.figures.iter().find(|f| f.tree == figure.tree && f.step == figure.step && f.transport == transport);
            let cells = |f: Option<&Figure>| match f {
                Some(f) => [secs(f.share.median), secs(f.local.median), times(f.ratio())],
                None => ["-".into(), "-".into(), "-".into()],
            };
            let [vs, vl, vr] = cells(find("virtiofs"));
            let [ns, nl, nr] = cells(find("9p"));
            let goal = find("virtiofs").map_or_else(String::new, Figure::goal_text);
            lines.push(vec![figure.name(), vs, vl, vr, ns, nl, nr, goal]);
        }
        table::print_columns(&header, lines, |i| i != 0 && i != 7, &self.notes);
        synced::print(self);
    }

    /// The figures as JSON (milliseconds); `sync` holds the synced VM's
    /// first copy and edit latencies.
    pub fn json(&self) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                json!({
                    "tree": f.tree, "step": f.step, "transport": f.transport,
                    "share_ms": f.share.json(), "local_ms": f.local.json(),
                    "share_over_local": f.ratio(), "goal": f.goal, "met": f.ratio() <= f.goal,
                })
            })
            .collect();
        json!({ "figures": figures, "notes": self.notes, "sync": self.sync.as_ref().map(Table::json) })
    }
}

fn secs(ms: f64) -> String {
    format!("{:.2}", ms / 1000.0)
}

fn times(x: f64) -> String {
    if x >= 10.0 { format!("{x:.0}×") } else { format!("{x:.1}×") }
}
