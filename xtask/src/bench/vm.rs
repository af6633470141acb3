//! VM figures: QEMU guests booted by `hutch up` from the images that
//! `cargo xtask image` built, when there are some: boot-to-agent-ready time
//! of the default Debian image beside the minimal busybox one (booted in
//! turn, so the ratio holds however fast the machine is that hour), and
//! `hutch exec -- true` into the minimal guest over hybrid vsock, through the
//! VM's multiplexer, beside the same command connecting directly and the raw
//! vsock round trip (a CONNECT handshake answered by the guest's kernel),
//! since the guest has no sshd to compare with.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use hutch_proto::addr::Addr;

use super::exec::run_ok;
use super::stats::{Contender, Stats, time_interleaved};
use super::table::{Goal, Table, Unit};
use super::{Plan, Setup};
use crate::workspace::{Result, target_dir};

/// `hutch exec -- true` into a TCG guest is meant to take at most this long (ms).
const GUEST_EXEC_GOAL_MS: f64 = 15.0;
/// The Debian image may take this many times the minimal image's boot.
const DEBIAN_BOOT_GOAL: f64 = 1.5;
/// The VM's name in the bench's private state dir.
const VM: &str = "bench";

/// Boots the guest (`boots` times for the boot figure), then times execs into it.
pub fn guest(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let images = target_dir().join("hutch-image");
    let image = images.join("minimal");
    if !image.join("image.json").exists() {
        table.note("QEMU rows skipped: no guest image under target/hutch-image (run `cargo xtask image`)");
        return Ok(());
    }
    let debian = Some(images.join("default")).filter(|d| d.join("image.json").exists());
    // A short path: Unix socket paths are limited to 107 bytes.
    let state = tempfile::Builder::new().prefix("hbench").tempdir_in("/tmp")?;
    let hutch = |args: &[&str]| {
        let mut cmd = Command::new(&setup.hutch);
        cmd.args(args).env("HUTCH_STATE_DIR", state.path()).env("HUTCH_IMAGE", &image).env_remove("HUTCH_ADDR").stdin(Stdio::null());
        cmd
    };
    let boot = |image: &Path| -> Result<f64> {
        let _ = hutch(&["rm", "-f", VM]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let mut up = hutch(&["up", "--name", VM, "--no-workspace", "--cpus", "1", "--memory", "256"]);
        up.env("HUTCH_IMAGE", image).stdout(Stdio::null()).stderr(Stdio::null());
        let begin = Instant::now();
        run_ok(&mut up)?;
        Ok(begin.elapsed().as_secs_f64() * 1000.0)
    };
    // In turn, one boot each (after one untimed boot each): the same machine for both.
    let mut minimal_boots = Vec::new();
    let mut debian_boots = Vec::new();
    let booted: Result<()> = (|| {
        boot(&image)?;
        if let Some(debian) = &debian {
            boot(debian)?;
        }
        for _ in 0..plan.boots {
            minimal_boots.push(boot(&image)?);
            if let Some(debian) = &debian {
                debian_boots.push(boot(debian)?);
            }
        }
        Ok(())
    })();
    if let Err(e) = booted {
        table.note(format!("QEMU rows skipped: `hutch up` failed: {e}"));
        return Ok(());
    }
    let minimal = Stats::of(minimal_boots).ok_or("no boots")?;
    match Stats::of(debian_boots) {
        Some(debian) => {
            let goal = Goal {
                text: format!("≤ {DEBIAN_BOOT_GOAL}× the minimal image"),
                met: debian.median <= DEBIAN_BOOT_GOAL * minimal.median,
            };
            table.figure(
                "guest_boot_debian",
                "QEMU guest, default Debian image: hutch up to agent ready (TCG)",
                Unit::Ms,
                debian.clone(),
                Some(goal),
            );
            table.anchor("guest_boot_debian.minimal", "the minimal busybox image, booted in turn", &debian, minimal.clone(), Unit::Ms);
        }
        None => table.note("Debian boot row skipped: no default image under target/hutch-image (run `cargo xtask image`)"),
    }
    table.figure("guest_boot", "QEMU guest, minimal image: hutch up to agent ready (TCG)", Unit::Ms, minimal, None);
    // The exec rows run in a fresh minimal guest.
    if let Err(e) = boot(&image) {
        table.note(format!("QEMU exec rows skipped: `hutch up` failed: {e}"));
        return Ok(());
    }

    // Through the VM's multiplexer (started by the warm-up call), beside the
    // same command connecting directly and the raw vsock round trip, in turn.
    let exec_true = |direct: bool| {
        let mut cmd = hutch(&["exec", "--name", VM, "--", "true"]);
        if direct {
            cmd.env("HUTCH_MUX", "0");
        }
        run_ok(cmd.stdout(Stdio::null()))
    };
    let hvsock = hvsock_of(state.path());
    let runs = plan.latency_runs;
    let mut contenders = vec![Contender::new(runs, || exec_true(false)), Contender::new(runs, || exec_true(true))];
    if let Some((socket, port)) = &hvsock {
        contenders.push(Contender::new(runs, move || connect_handshake(socket, *port)));
    }
    let samples = time_interleaved(&mut contenders, super::exec::LATENCY_TURNS)?;
    drop(contenders);
    let stats = |i: usize| Stats::of(samples[i].clone()).ok_or("no samples");
    let exec = stats(0)?;
    let goal = Goal { text: format!("≤ {GUEST_EXEC_GOAL_MS} ms"), met: exec.median <= GUEST_EXEC_GOAL_MS };
    table.figure("guest_exec_true", "hutch exec -- true into the QEMU guest", Unit::Ms, exec.clone(), Some(goal));
    table.anchor("guest_exec_true.direct", "the same, connecting directly (HUTCH_MUX=0)", &exec, stats(1)?, Unit::Ms);
    match hvsock {
        Some(_) => {
            table.anchor("guest_exec_true.vsock_rtt", "raw vsock round trip (CONNECT → OK)", &exec, stats(2)?, Unit::Ms);
        }
        None => table.note("raw vsock anchor skipped: the guest is reached over kernel vsock, not hybrid vsock"),
    }
    let _ = hutch(&["rm", "-f", VM]).stdout(Stdio::null()).status();
    Ok(())
}

/// The hybrid-vsock socket and port from the bench VM's record.
fn hvsock_of(state: &Path) -> Option<(PathBuf, u32)> {
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("vms").join(VM).join("vm.json")).ok()?).ok()?;
    match record["addr"].as_str()?.parse::<Addr>().ok()? {
        Addr::Hvsock { path, port } => Some((path, port)),
        _ => None,
    }
}

/// One hybrid-vsock handshake: the guest kernel accepts for the agent's
/// listener and vhost-device-vsock answers `OK`.
fn connect_handshake(socket: &Path, port: u32) -> Result<()> {
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    if line.starts_with("OK") { Ok(()) } else { Err(format!("CONNECT {port} answered {line:?}").into()) }
}
