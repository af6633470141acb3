//! Warm pools (`hutch warm`, `[warm] count`, `run --rm` taking a ready VM)
//! through the Lima backend's fake `limactl`, whose VMs all reach one real
//! agent on this machine: what is booted when, which VM a run gets, what is
//! refilled and dropped, and which VM manager commands run. What a ready VM
//! holds (its own disk, machine id and RNG) is tested in real QEMU guests
//! (`e2e_debian.rs`).

use std::time::{Duration, Instant};

use hutch_tests::fakes::FakeVmm;
use hutch_tests::{code, stderr, stdout};

fn ok(out: &std::process::Output) -> String {
    assert_eq!(code(out), 0, "hutch failed:\n{}{}", stdout(out), stderr(out));
    stdout(out)
}

/// The pool VMs `hutch ls --json` lists: (name, state, memory).
fn pool(fake: &FakeVmm) -> Vec<(String, String, u64)> {
    let listed: serde_json::Value = serde_json::from_str(&ok(&fake.run(&["ls", "--json"]))).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|vm| !vm["pool"].is_null())
        .map(|vm| (vm["name"].as_str().unwrap().to_owned(), vm["state"].as_str().unwrap().to_owned(), vm["memory_mib"].as_u64().unwrap()))
        .collect()
}

fn ready(fake: &FakeVmm) -> Vec<String> {
    pool(fake).into_iter().filter(|(_, state, _)| state == "ready").map(|(name, _, _)| name).collect()
}

/// The pool marks in the VMs' records: (name, state), by name. (Cheaper to
/// poll than `hutch ls`, which asks the fake VM manager about every VM.)
fn marks(fake: &FakeVmm) -> Vec<(String, String)> {
    let mut marks: Vec<(String, String)> = std::fs::read_dir(fake.state().join("vms"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let record: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.path().join("vm.json")).ok()?).ok()?;
            Some((record["name"].as_str()?.to_owned(), record["pool"]["state"].as_str()?.to_owned()))
        })
        .collect();
    marks.sort();
    marks
}

/// Waits (polling the records, up to two minutes) until the pool holds `n`
/// ready VMs and nothing is booting; returns their names.
fn wait_for_ready(fake: &FakeVmm, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pool = marks(fake);
        if pool.len() == n && pool.iter().all(|(_, state)| state == "ready") {
            return pool.into_iter().map(|(name, _)| name).collect();
        }
        assert!(Instant::now() < deadline, "the pool did not settle at {n} ready VMs: {pool:?}");
        std::thread::sleep(Duration::from_millis(50)); // polling a condition with a deadline
    }
}

/// The instances the fake was asked to make (clone or create) since the last look.
fn made(commands: &[Vec<String>]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c.first().map(String::as_str) {
            Some("clone") if c.len() > 2 && c[1] != "--help" => Some(c[2].clone()),
            Some("create") => c.iter().position(|a| a == "--name").and_then(|i| c.get(i + 1)).cloned(),
            _ => None,
        })
        .collect()
}

fn deleted(commands: &[Vec<String>]) -> Vec<String> {
    commands.iter().filter(|c| c.first().map(String::as_str) == Some("delete")).filter_map(|c| c.last().cloned()).collect()
}

#[test]
fn a_pool_is_warmed_taken_by_runs_refilled_and_dropped() {
    let fake = FakeVmm::lima();
    let ws = fake.workspace();
    std::fs::write(ws.join("hutch.toml"), "[warm]\ncount = 2\n").unwrap();
    let ws_s = ws.to_str().unwrap();

    // `hutch warm --wait` boots the configured two, and says so.
    let out = ok(&fake.run(&["warm", "--wait", "--workspace", ws_s]));
    assert!(out.ends_with(&format!("2 ready VMs for {ws_s}\n")), "{out}");
    let warmed = ready(&fake);
    assert_eq!(warmed.len(), 2, "{warmed:?}");
    assert!(warmed.iter().all(|n| n.starts_with("warm-")), "{warmed:?}");
    let mut booted = made(&fake.take_commands());
    booted.sort();
    assert_eq!(booted, warmed, "one instance made per ready VM");

    // Nothing runs in a ready VM until a run takes it.
    let out = fake.run(&["exec", "--name", &warmed[0], "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("is a ready VM of a warm pool"), "{}", stderr(&out));

    // A run takes one: no instance is made for it, the one it took is
    // deleted after, and the pool is topped up to two again behind it.
    let out = fake.run(&["run", "--rm", "--workspace", ws_s, "--", "sh", "-c", "echo from-the-pool; exit 3"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (3, "from-the-pool\n"), "{}", stderr(&out));
    let refilled = wait_for_ready(&fake, 2);
    let commands = fake.take_commands();
    let taken: Vec<&String> = warmed.iter().filter(|n| !refilled.contains(n)).collect();
    assert_eq!(taken.len(), 1, "one ready VM was taken: {warmed:?} → {refilled:?}");
    assert_eq!(deleted(&commands), [taken[0].clone()], "{commands:?}");
    assert_eq!(made(&commands).len(), 1, "only the refill was booted: {commands:?}");
    assert!(made(&commands)[0].starts_with("warm-"), "{commands:?}");

    // `--cold` boots its own and leaves the pool alone.
    ok(&fake.run(&["run", "--rm", "--cold", "--workspace", ws_s, "--", "true"]));
    assert_eq!(wait_for_ready(&fake, 2), refilled);
    let commands = fake.take_commands();
    let cold = made(&commands);
    assert!(cold.len() == 1 && cold[0].starts_with("run-"), "{commands:?}");
    assert_eq!(deleted(&commands), cold);

    // `--count 0` drops them all; nothing is left running.
    let out = ok(&fake.run(&["warm", "--count", "0", "--workspace", ws_s]));
    assert_eq!(out, format!("dropped 2 ready VMs of {ws_s}\n"));
    assert!(pool(&fake).is_empty());
    assert!(fake.running().is_empty(), "left running: {:?}", fake.running());
    let listing = ok(&fake.run(&["ls"]));
    assert!(!listing.contains("warm-"), "{listing}");
}

#[test]
fn ready_vms_serve_only_runs_of_their_settings_and_follow_the_configuration() {
    let fake = FakeVmm::lima();
    let ws = fake.workspace();
    let ws_s = ws.to_str().unwrap();
    ok(&fake.run(&["warm", "--count", "1", "--wait", "--cpus", "3", "--workspace", ws_s]));
    let first = ready(&fake);
    assert_eq!(first.len(), 1);
    fake.take_commands();

    // Other settings: a cold boot; the ready VM stays, unused, and `ls` says so.
    ok(&fake.run(&["run", "--rm", "--workspace", ws_s, "--", "true"]));
    let commands = fake.take_commands();
    assert!(made(&commands).iter().all(|n| n.starts_with("run-")) && made(&commands).len() == 1, "{commands:?}");
    let listing = ok(&fake.run(&["ls"]));
    assert!(listing.lines().any(|l| l.starts_with(&first[0]) && l.contains(" ready ")), "{listing}");

    // The same settings: taken.
    ok(&fake.run(&["run", "--rm", "--cpus", "3", "--workspace", ws_s, "--", "true"]));
    let commands = fake.take_commands();
    assert!(made(&commands).iter().all(|n| n.starts_with("warm-")), "the run booted a VM of its own: {commands:?}");
    assert!(deleted(&commands).contains(&first[0]), "{commands:?}");

    // The configuration changes: the pool is made again with it (the old
    // VM dropped), and a run with the new settings takes the new VM.
    let refilled = wait_for_ready(&fake, 1);
    std::fs::write(ws.join("hutch.toml"), "memory = 1536\n").unwrap();
    ok(&fake.run(&["warm", "--wait", "--cpus", "3", "--workspace", ws_s]));
    let now = pool(&fake);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].0, refilled[0], "the VM of the old settings was kept");
    assert_eq!((now[0].1.as_str(), now[0].2), ("ready", 1536));
    fake.take_commands();
    ok(&fake.run(&["run", "--rm", "--cpus", "3", "--workspace", ws_s, "--", "true"]));
    assert!(deleted(&fake.take_commands()).contains(&now[0].0));
    ok(&fake.run(&["warm", "--count", "0", "--workspace", ws_s]));
    assert!(fake.running().is_empty());
}

#[test]
fn runs_at_once_never_share_a_ready_vm() {
    let fake = FakeVmm::lima();
    let ws = fake.workspace();
    let ws_s = ws.to_str().unwrap();
    ok(&fake.run(&["warm", "--count", "3", "--wait", "--workspace", ws_s]));
    let warmed = ready(&fake);
    fake.take_commands();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            fake.hutch()
                .args(["run", "--rm", "--workspace", ws_s, "--", "true"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        ok(&run.wait_with_output().unwrap());
    }
    // The standing order (from `hutch warm`) refills the pool behind them.
    wait_for_ready(&fake, 3);
    let commands = fake.take_commands();
    let mut gone = deleted(&commands);
    gone.sort();
    let mut expected = warmed.clone();
    expected.sort();
    assert_eq!(gone, expected, "each run took a VM of its own: {commands:?}");
    ok(&fake.run(&["warm", "--count", "0", "--workspace", ws_s]));
}
