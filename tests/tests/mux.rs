//! The per-VM multiplexer (`hutch mux`) in front of a real agent, reached
//! through the fake Tart's control socket: calls through it behave exactly
//! as direct ones, commands by name use it, one runs per VM, and it never
//! outlives its VM.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use hutch_tests::fakes::FakeVmm;
use hutch_tests::pidfd::{proc_parent, proc_state};
use hutch_tests::{code, pseudo_random, stderr, stdout};

fn ok(out: &std::process::Output) {
    assert_eq!(code(out), 0, "hutch failed:\n{}{}", stdout(out), stderr(out));
}

/// A fake Tart with VM `web` up, brought up without its multiplexer (each
/// test starts one, or not, itself).
fn web() -> FakeVmm {
    let fake = FakeVmm::tart();
    let ws = fake.workspace();
    let up = fake
        .hutch()
        .args(["up", "--name", "web", "--image", "base", "--workspace", ws.to_str().unwrap()])
        .env("HUTCH_MUX", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&up);
    assert!(!vm_dir(&fake).join("mux.sock").exists(), "a multiplexer started despite HUTCH_MUX=0");
    fake
}

fn vm_dir(fake: &FakeVmm) -> PathBuf {
    fake.state().join("vms/web")
}

/// Starts `hutch mux --name web` with debug logs into `log`, and returns
/// once it says it serves.
fn start_mux(fake: &FakeVmm, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut child =
        fake.hutch().args(["mux", "--name", "web"]).env("HUTCH_LOG", "debug").stdout(Stdio::piped()).stderr(log).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    child
}

/// Whether process `pid` is still running (a zombie is not).
fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() && proc_state(pid) != Some('Z')
}

/// The pid in the multiplexer's "hutch mux PID: relaying …" log line.
fn mux_pid(log: &Path) -> i32 {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text.lines().find(|l| l.contains(": relaying ")).unwrap_or_else(|| panic!("no start line in {text}"));
    line.trim_start_matches("hutch mux ").split(':').next().unwrap().parse().unwrap()
}

#[test]
fn calls_through_the_multiplexer_behave_as_direct_ones() {
    let fake = web();
    let log = fake.root.path().join("mux-test.log");
    let mut mux = start_mux(&fake, &log);
    let addr = format!("unix://{}", vm_dir(&fake).join("mux.sock").display());
    let exec = |args: &[&str], input: &[u8]| {
        let mut child = fake
            .hutch()
            .args(["exec", "--addr", &addr, "--"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };

    let out = exec(&["sh", "-c", "echo out; echo err >&2; exit 7"], b"");
    assert_eq!((code(&out), stdout(&out).as_str(), stderr(&out).as_str()), (7, "out\n", "err\n"));
    // Stdin streams through, and bulk output arrives whole, in both directions.
    let data = pseudo_random(3 << 20, 11);
    let out = exec(&["cat"], &data);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == data, "cat through the multiplexer changed the bytes ({} of {})", out.stdout.len(), data.len());
    let out = exec(&["sh", "-c", "kill -TERM $$"], b"");
    assert_eq!(code(&out), 143, "{}", stderr(&out));

    // A command by name goes through it too.
    let out = fake.run(&["exec", "--name", "web", "--", "echo", "by-name"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "by-name\n"), "{}", stderr(&out));
    let relayed = std::fs::read_to_string(&log).unwrap().matches("relaying /hutch.v1.Agent/Exec").count();
    assert_eq!(relayed, 4, "calls relayed, per the multiplexer's log");

    ok(&fake.run(&["down", "web"]));
    assert_eq!(mux.wait().unwrap().code(), None, "`down` stops the multiplexer with SIGTERM");
}

#[test]
fn the_first_command_starts_one_and_down_stops_it_before_the_vm() {
    let fake = web();
    let sock = vm_dir(&fake).join("mux.sock");
    let out = fake.run(&["exec", "--name", "web", "--", "echo", "direct"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "direct\n"), "{}", stderr(&out));
    // It waits until the multiplexer it started serves, so it is there now.
    assert!(sock.exists(), "no multiplexer after the first command");
    let pid = mux_pid(&vm_dir(&fake).join("mux.log"));
    assert!(alive(pid));

    ok(&fake.run(&["down", "web"]));
    assert!(!alive(pid), "the multiplexer outlived `hutch down`");
    // Right after `down`, a command says the VM is stopped: no multiplexer
    // answers for it with a broken connection.
    let out = fake.run(&["exec", "--name", "web", "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("VM web is stopped"), "{}", stderr(&out));
}

#[test]
fn a_long_command_that_starts_one_is_not_its_parent() {
    let fake = web();
    let mut exec = fake
        .hutch()
        .args(["exec", "--name", "web", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = exec.stdin.take().unwrap();
    let mut output = BufReader::new(exec.stdout.take().unwrap());
    // A line back through `cat`: the command runs, so the multiplexer it
    // started before running it serves.
    input.write_all(b"through\n").unwrap();
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert_eq!(line, "through\n");
    let pid = mux_pid(&vm_dir(&fake).join("mux.log"));
    assert!(alive(pid));
    // Were it the command's child, it would stay a zombie of the command
    // (which never reaps) from the moment it leaves until the command ends.
    assert_ne!(proc_parent(pid), Some(exec.id() as i32), "the multiplexer is a child of the command that started it");

    drop(input);
    let out = exec.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    ok(&fake.run(&["rm", "-f", "web"]));
    assert!(!alive(pid), "the multiplexer outlived `hutch rm`");
}

#[test]
fn hutch_mux_0_connects_directly() {
    let fake = web();
    let out =
        fake.hutch().args(["exec", "--name", "web", "--", "echo", "plain"]).env("HUTCH_MUX", "0").stdin(Stdio::null()).output().unwrap();
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "plain\n"), "{}", stderr(&out));
    assert!(!vm_dir(&fake).join("mux.sock").exists(), "a multiplexer started despite HUTCH_MUX=0");
}

#[test]
fn up_starts_one_for_the_first_command() {
    let fake = FakeVmm::tart();
    let ws = fake.workspace();
    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--workspace", ws.to_str().unwrap()]));
    let pid = mux_pid(&vm_dir(&fake).join("mux.log"));
    assert!(alive(pid));
    // `up` again finds it and starts no second one.
    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--workspace", ws.to_str().unwrap()]));
    let log = std::fs::read_to_string(vm_dir(&fake).join("mux.log")).unwrap();
    assert_eq!(log.matches(": relaying ").count(), 1, "{log}");
    ok(&fake.run(&["rm", "-f", "web"]));
    assert!(!alive(pid), "the multiplexer outlived `hutch rm`");
}

#[test]
fn one_multiplexer_per_vm() {
    let fake = web();
    let log = fake.root.path().join("mux-test.log");
    let mut first = start_mux(&fake, &log);
    let second = fake.hutch().args(["mux", "--name", "web"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!((code(&second), stdout(&second).as_str()), (0, ""), "a second multiplexer: {}", stderr(&second));
    ok(&fake.run(&["rm", "-f", "web"]));
    assert_eq!(first.wait().unwrap().code(), None, "`rm` stops the multiplexer with SIGTERM");
}

#[test]
fn the_multiplexer_leaves_when_its_agent_connection_ends() {
    let fake = web();
    let log = fake.root.path().join("mux-test.log");
    let mut mux = start_mux(&fake, &log);
    // The fake `tart run` carries the VM's control socket: without it, the
    // agent connection ends as when a VM dies.
    for pid in fake.running() {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    assert_eq!(mux.wait().unwrap().code(), Some(0));
    assert!(!vm_dir(&fake).join("mux.sock").exists(), "the socket outlived the multiplexer");
    assert!(std::fs::read_to_string(&log).unwrap().contains("the agent connection ended"));
}
