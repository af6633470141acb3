//! `cargo xtask`: project tasks that need more than `cargo build`.
//!
//! - `demo [-- CMD…]`: start a local agent on a private socket, run one command
//!   through `hutch exec`, stop the agent (hutch without a VM);
//! - `dist`: static hutch-agent for Linux guests, plus systemd/launchd files;
//! - `e2e`: build the image and run the end-to-end suite in QEMU guests;
//! - `image [--minimal-only] [--rebuild]`: build the QEMU guest images (the
//!   Debian default, the busybox `minimal`) and install them;
//! - `install [--root DIR]`: the `hutch` CLI into DIR/bin, static on Linux;
//! - `base-image`: a Debian disk image with systemd and sshd but no agent
//!   (what `hutch image prepare` takes; its e2e test uses it);
//! - `bench [--quick] [--json FILE]`: measure hutch against its anchors;
//! - `bench-sync [--quick] [--json FILE]`: `--ro` snapshot sync beside rsync;
//! - `bench-git [--quick]`: the git guard's cost against `--unguarded-git`;
//! - `bench-exec [--quick]`: only `bench`'s exec latency rows, with exec as
//!   an unprivileged user;
//! - `bench-warm [--quick]`: only `bench`'s warm-start and fork rows;
//! - `bench-workspace [--quick] [--only virtiofs,9p,sync] [--json FILE]`: only `bench`'s "workspace in
//!   the guest" section (virtio-fs, 9p and a `--sync` copy against a
//!   VM-local copy; the synced copy's first copy and edit latency).
//!
//! Both Debian images come from one builder, [`rootfs`].

mod base_image;
mod bench;
mod bench_sync;
mod demo;
mod dist;
mod e2e;
mod image;
mod install;
mod rootfs;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "hutch project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build, start a local agent, run CMD through `hutch exec` (default: uname -a), stop the agent.
    Demo {
        /// Command to run (after --).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Build the QEMU guest images and install them: the default (Debian 12 on a disk, with what the
    /// `[image]` table of your configuration adds) and `minimal` (busybox in RAM).
    Image {
        /// Only build them under target/hutch-image; do not install them.
        #[arg(long)]
        no_install: bool,
        /// Only the minimal image (seconds instead of minutes; `hutch up --image minimal`).
        #[arg(long)]
        minimal_only: bool,
        /// Build the Debian disk again even if its recipe did not change (newer packages).
        #[arg(long)]
        rebuild: bool,
    },
    /// Install the `hutch` CLI into ~/.cargo/bin (statically linked on Linux/glibc: faster start-up).
    Install {
        /// Install into DIR/bin instead.
        #[arg(long, value_name = "DIR")]
        root: Option<std::path::PathBuf>,
    },
    /// Build a small Debian disk image with systemd and sshd but no agent (target/hutch-base/debian.img, cached).
    BaseImage,
    /// Build static hutch-agent binaries for Linux guests and the systemd/launchd service files, into target/dist.
    Dist,
    /// Build the guest image and the Debian base image, and run the end-to-end tests in real QEMU guests.
    E2e {
        /// Run only the tests whose names contain one of these (cargo test's filters).
        filters: Vec<String>,
    },
    /// Measure hutch beside its anchors (/bin/true, ...) and print ratios.
    Bench {
        /// Fewer runs, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Also write the results as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
    /// Measure the workspace in a QEMU guest (virtiofs, 9p, --sync) against a VM-local copy, as ratios; --sync's first copy and edit latency.
    BenchWorkspace {
        /// One run per figure, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Only these workspaces: virtiofs, 9p, sync (repeatable, or comma-separated).
        #[arg(long, value_delimiter = ',', value_parser = ["virtiofs", "9p", "sync"])]
        only: Vec<String>,
        /// Also write the results as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
    /// Measure what the git guard costs (git in the guest, the share, exec, taking commits back, up) against --unguarded-git.
    BenchGit {
        /// One run per guest figure, for a quick look.
        #[arg(long)]
        quick: bool,
    },
    /// Measure `--ro` snapshot sync (initial copy, no-change, 10 files) beside rsync, locally and over ssh.
    BenchSync {
        /// Fewer runs, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Also write the results as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
    /// Only the egress proxy's rows of `bench`: HTTPS first byte through it, a guest download beside slirp.
    BenchNet {
        /// Fewer runs, for a quick look.
        #[arg(long)]
        quick: bool,
    },
    /// Only the exec latency rows of `bench`: `hutch exec -- true` beside its anchors, and as an unprivileged user.
    BenchExec {
        /// Fewer runs, for a quick look.
        #[arg(long)]
        quick: bool,
    },
    /// Only the warm-start rows of `bench`: warm and cold `run --rm`, forks, what a ready VM costs.
    BenchWarm {
        /// Fewer runs, for a quick look.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Demo { command } => demo::run(command),
        Task::Dist => dist::run(),
        Task::Install { root } => install::run(root.as_deref()),
        Task::BaseImage => base_image::run().map(|image| {
            println!("{}", image.disk.display());
            0
        }),
        Task::E2e { filters } => e2e::run(&filters),
        Task::Image { no_install, minimal_only, rebuild } => (|| {
            let debian = if minimal_only { None } else { Some(("default", image::debian::Extras::from_user_config()?)) };
            image::run(&image::Options { install: !no_install, debian, rebuild }).map(|_| 0)
        })(),
        Task::Bench { quick, json } => bench::run(quick, json.as_deref()).map(|()| 0),
        Task::BenchWorkspace { quick, only, json } => bench::run_workspace(quick, &only, json.as_deref()).map(|()| 0),
        Task::BenchNet { quick } => bench::run_net(quick).map(|()| 0),
        Task::BenchGit { quick } => bench::run_git(quick).map(|()| 0),
        Task::BenchExec { quick } => bench::run_exec(quick).map(|()| 0),
        Task::BenchWarm { quick } => bench::run_warm(quick).map(|()| 0),
        Task::BenchSync { quick, json } => bench_sync::run(quick).and_then(|report| {
            if let Some(path) = json {
                std::fs::write(path, format!("{report:#}\n"))?;
            }
            Ok(0)
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
