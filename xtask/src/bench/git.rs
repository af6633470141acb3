//! `cargo xtask bench-git`: what the host's git guard costs, as ratios
//! against the same thing without it (`--unguarded-git`), in the same run.
//!
//! Two VMs of the same image, each sharing its own copy of the seeded
//! 5k-file repository: one guarded (the file server in hutch's namespace,
//! `.git` a read-only view, a VM-local gitdir in the guest, the guest's
//! commits fetched back), one not (`.git` shared writable, as before the
//! guard). Each figure is timed in both, in turn:
//!
//! - git in the guest (`status`, a one-file `commit`, `log -p`), timed in
//!   the guest: the guest's own gitdir against the share's `.git`;
//! - reading the share (`find`, reading every file), timed in the guest:
//!   the file server in the guard's namespace against one outside it;
//! - `hutch exec -- true`, timed on the host: the refs stamp every `Exited`
//!   carries, and its comparison;
//! - a commit made through `hutch exec`, timed on the host: with the guard
//!   it includes taking the commit back (list, fetch, fast-forward, index);
//! - `hutch up` of the stopped VM, timed on the host: the guard's views,
//!   namespace and the agent's gitdir are part of it.

use std::process::Stdio;
use std::time::Instant;

use super::stats::Stats;
use super::table;
use super::workspace::{Guest, image, seeded_repo};
use crate::workspace::{Result, target_dir};

/// How many timed runs per figure.
struct Runs {
    guest: usize,
    exec: usize,
    boots: usize,
}

/// Runs the section and prints it.
pub fn run(quick: bool) -> Result<()> {
    let hutch = crate::install::build_host_cli()?;
    let runs = if quick { Runs { guest: 1, exec: 10, boots: 1 } } else { Runs { guest: 3, exec: 30, boots: 3 } };
    let image = image().ok_or("no guest image under target/hutch-image: run `cargo xtask image` (or `cargo xtask e2e`)")?;
    println!("hutch bench-git{}: {}; guest image {}\n", if quick { " --quick" } else { "" }, super::machine(), image.display());
    let root = target_dir().join("bench-git");
    let mut notes = Vec::new();
    let mut dirs = Vec::new();
    for side in ["guarded", "unguarded"] {
        let dir = root.join(side);
        seeded_repo(&dir)?;
        dirs.push(dir.canonicalize()?);
    }
    let guarded = Guest::up_as(&hutch, &image, &dirs[0], "virtiofs", "bench-guarded", &[])?;
    let unguarded = Guest::up_as(&hutch, &image, &dirs[1], "virtiofs", "bench-unguarded", &["--unguarded-git"])?;
    let pair = [&guarded, &unguarded];
    let mut rows = Vec::new();

    // In the guest: git, then reading the share. Each timed in one VM, then the other.
    let steps: [(&str, &str, bool); 5] = [
        ("git status --porcelain", "git status --porcelain >/dev/null", true),
        (
            "git commit of one changed file",
            "n=$(date +%s%N); echo $n >> m00/pkg000/bench-commit.txt && git add m00/pkg000/bench-commit.txt && git commit -qm \"bench $n\"",
            false,
        ),
        ("git log -p -20", "git log -p -20 >/dev/null", false),
        ("find . -type f (the share)", "find . -type f >/dev/null", false),
        ("read every file (the share)", "find . -type f -print0 | xargs -0 cat >/dev/null", false),
    ];
    for (label, script, warm_up) in steps {
        let mut samples = [Vec::new(), Vec::new()];
        for run in 0..runs.guest + usize::from(warm_up) {
            for (i, guest) in pair.iter().enumerate() {
                let ms = guest.timed(&guest.workspace, script)?;
                if run >= usize::from(warm_up) {
                    samples[i].push(ms);
                }
            }
        }
        rows.push(row(label, "in the guest", samples)?);
    }

    // On the host: a command with nothing to take, and a commit to take back.
    let exec = |guest: &Guest, argv: &[&str]| -> Result<f64> {
        let mut all = vec!["exec", "--name", guest.name(), "--"];
        all.extend_from_slice(argv);
        let began = Instant::now();
        let out = guest.hutch(&all).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if !out.success() {
            return Err(format!("hutch {all:?} failed: {out}").into());
        }
        Ok(began.elapsed().as_secs_f64() * 1000.0)
    };
    for (label, argv, n) in [
        ("hutch exec -- true", &["true"][..], runs.exec),
        (
            "hutch exec -- git commit --allow-empty (taken back at its end)",
            &["git", "commit", "-q", "--allow-empty", "-m", "bench"][..],
            runs.guest * 3,
        ),
    ] {
        let mut samples = [Vec::new(), Vec::new()];
        for guest in pair {
            exec(guest, argv)?; // untimed: what the previous one left running
        }
        for _ in 0..n {
            for (i, guest) in pair.iter().enumerate() {
                samples[i].push(exec(guest, argv)?);
            }
        }
        rows.push(row(label, "on the host", samples)?);
    }

    // `hutch up` of the stopped VM (down first), in turn.
    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..runs.boots {
        for (i, guest) in pair.iter().enumerate() {
            let name = guest.name();
            let down = guest.hutch(&["down", name]).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
            if !down.success() {
                return Err(format!("hutch down {name} failed").into());
            }
            let mut up = vec!["up", "--name", name, "--workspace", &guest.workspace, "--no-heavy"];
            if i == 1 {
                up.push("--unguarded-git");
            }
            let began = Instant::now();
            let out = guest.hutch(&up).stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
            if !out.status.success() {
                return Err(format!("hutch up {name} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
            }
            samples[i].push(began.elapsed().as_secs_f64() * 1000.0);
        }
    }
    rows.push(row("hutch up of the stopped VM (views, namespace, the guest's gitdir)", "on the host", samples)?);
    notes.push(format!("each VM shares its own copy of the seeded repository (5,000 files, ~60 MB) under {}", root.display()));
    print(&rows, &notes);
    Ok(())
}

/// One figure: the guarded VM's samples and the unguarded one's.
struct Row {
    label: &'static str,
    timed: &'static str,
    guarded: Stats,
    unguarded: Stats,
}

fn row(label: &'static str, timed: &'static str, samples: [Vec<f64>; 2]) -> Result<Row> {
    let [guarded, unguarded] = samples;
    Ok(Row { label, timed, guarded: Stats::of(guarded).ok_or("no samples")?, unguarded: Stats::of(unguarded).ok_or("no samples")? })
}

fn print(rows: &[Row], notes: &[String]) {
    println!("the git guard: guarded ÷ --unguarded-git, same image, same run, in turn (QEMU, 1 vCPU; medians, ms)");
    let lines = rows
        .iter()
        .map(|r| {
            vec![
                r.label.to_owned(),
                r.timed.to_owned(),
                format!("{:.1}", r.guarded.median),
                format!("{:.1}", r.unguarded.median),
                format!("{:.2}×", r.guarded.median / r.unguarded.median),
                format!("{}", r.guarded.runs),
            ]
        })
        .collect();
    table::print_columns(&["figure", "timed", "guarded", "unguarded", "÷", "runs"], lines, |i| i >= 2, notes);
}
