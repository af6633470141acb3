//! Sessions (`exec --detach`/`--keep`, `attach`, `ps`, `logs`, `wait`,
//! `kill`) against a real agent on a real socket, with real terminals. The
//! commands in the sessions synchronise with the test through fifos, never
//! through sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use hutch_tests::pidfd::PidFd;
use hutch_tests::pty::{OnPty, is_cooked};
use hutch_tests::{Agent, PROMPT, code, pseudo_random, stderr, stdout};
use serde_json::Value;

fn ok(out: &Output) -> String {
    assert_eq!(code(out), 0, "hutch failed:\n{}{}", stdout(out), stderr(out));
    stdout(out)
}

fn run(agent: &Agent, args: &[&str]) -> Output {
    agent.hutch().args(args).stdin(Stdio::null()).output().unwrap()
}

/// A fifo in the agent's scratch dir.
fn fifo(agent: &Agent, name: &str) -> PathBuf {
    let path = agent.dir.path().join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    path
}

/// Lets a session blocked in `read x < FIFO` go on.
fn release(fifo: &Path) {
    std::fs::OpenOptions::new().write(true).open(fifo).unwrap().write_all(b"go\n").unwrap();
}

/// Waits until a session has written to `fifo` and closed it.
fn await_signal(fifo: &Path) {
    let mut text = String::new();
    std::fs::File::open(fifo).unwrap().read_to_string(&mut text).unwrap();
}

/// `hutch ps --json`, the entry for `tag`.
fn ps_entry(agent: &Agent, tag: &str) -> Value {
    let list: Value = serde_json::from_str(&ok(&run(agent, &["ps", "--json"]))).unwrap();
    list.as_array().unwrap().iter().find(|s| s["tag"] == tag).cloned().unwrap_or_else(|| panic!("{tag} not listed: {list}"))
}

/// Asks `ps` until `done` holds for `tag`'s entry: a client's departure
/// reaches the agent on its own schedule (a killed client's connection is
/// closed by the kernel), so this is the only way to know it has.
fn ps_until(agent: &Agent, tag: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PROMPT;
    loop {
        let entry = ps_entry(agent, tag);
        if done(&entry) {
            return entry;
        }
        assert!(Instant::now() < deadline, "{tag} never got {what}: {entry}");
        std::thread::yield_now();
    }
}

/// Starts `hutch ARGS` with stdout piped; returns it and its first line.
fn spawn_until_first_line(agent: &Agent, args: &[&str]) -> (Child, String) {
    let mut child = agent.hutch().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

/// Reads stderr lines of `child` until one contains `needle`.
fn stderr_line(reader: &mut impl BufRead, needle: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stderr ended before {needle:?}");
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn output_written_while_detached_keeps_its_tail_in_order_then_live_output_and_the_exit_code() {
    let agent = Agent::unix();
    let data = pseudo_random(10_000_000, 18);
    let file = hutch_tests::write_file(agent.dir.path(), "data", &data);
    let (written, go) = (fifo(&agent, "written"), fifo(&agent, "go"));
    let script = format!("cat '{}'; : > '{}'; read x < '{}'; echo live-line; exit 7", file.display(), written.display(), go.display());
    let tag = ok(&run(&agent, &["exec", "--detach", "--tag", "big", "--", "sh", "-c", &script]));
    assert_eq!(tag, "big\n");
    await_signal(&written);

    let mut attach =
        agent.hutch().args(["attach", "big"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(attach.stderr.take().unwrap());
    let notice = stderr_line(&mut err, "dropped here");
    let dropped: usize = notice.trim_start_matches("hutch: [").split(' ').next().unwrap().parse().unwrap();
    assert!(dropped > 0 && dropped <= data.len() - (4 << 20), "the 4 MiB buffer keeps at least its size: {notice}");
    let mut out = attach.stdout.take().unwrap();
    let mut tail = vec![0; data.len() - dropped];
    out.read_exact(&mut tail).unwrap();
    assert!(tail == data[dropped..], "the tail arrives whole and in order");

    release(&go);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "live-line\n");
    assert_eq!(attach.wait().unwrap().code(), Some(7), "attach leaves with the session's code");
    assert_eq!(code(&run(&agent, &["wait", "big"])), 7);
    let entry = ps_entry(&agent, "big");
    assert_eq!((entry["state"].as_str(), entry["exit_code"].as_u64()), (Some("exited"), Some(7)));
    let everything = data.len() + "live-line\n".len();
    assert_eq!(entry["dropped_stdout_bytes"].as_u64(), Some((everything - (4 << 20)) as u64), "the buffer keeps the newest 4 MiB");
}

#[test]
fn a_keep_client_killed_mid_run_leaves_the_command_running_and_attach_finds_it() {
    let agent = Agent::unix();
    let go = fifo(&agent, "go");
    let script = format!("echo started; read x < '{}'; echo finished; exit 5", go.display());
    let (mut client, line) = spawn_until_first_line(&agent, &["exec", "--keep", "--tag", "job", "--", "sh", "-c", &script]);
    assert_eq!(line, "started\n");
    client.kill().unwrap(); // SIGKILL: no goodbye
    client.wait().unwrap();

    let entry = ps_until(&agent, "job", "its writer gone", |e| e["attached"] == false);
    assert_eq!(entry["state"], "running");
    let pid = entry["pid"].as_i64().unwrap() as i32;
    assert!(PidFd::open(pid).is_some(), "the command must still run");

    let attach = agent.hutch().args(["attach", "job"]).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    ps_until(&agent, "job", "a writer again", |e| e["attached"] == true);
    release(&go);
    let out = attach.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "finished\n", "only what the killed client never saw");
    assert_eq!(code(&out), 5);
}

/// Starts `hutch attach TAG` on a terminal of `rows` x `cols`.
fn attach_on_pty(agent: &Agent, tag: &str, rows: u16, cols: u16) -> OnPty {
    let mut cmd = agent.hutch();
    cmd.args(["attach", tag]);
    OnPty::spawn(cmd, rows, cols)
}

#[test]
fn a_pty_session_follows_resizes_detaches_on_the_keys_and_redraws_on_reattach() {
    let agent = Agent::unix();
    // A full-screen program in miniature: it redraws (prints its size) on SIGWINCH.
    let script = "trap 'echo \"redraw $(stty size)\"' WINCH; echo ready; while :; do sleep 1 & wait $!; done";
    ok(&run(&agent, &["exec", "--detach", "-t", "--tag", "tui", "--", "sh", "-c", script]));

    let mut first = attach_on_pty(&agent, "tui", 30, 100);
    first.wait_for("ready", PROMPT);
    first.wait_for("redraw 30 100", PROMPT);
    assert!(!is_cooked(&first.termios()), "attached to a PTY session, the local terminal is raw");
    first.resize(40, 120);
    first.wait_for("redraw 40 120", PROMPT);
    first.type_bytes(b"\x1c\x1c");
    let status = first.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    first.wait_for("detached", PROMPT);
    assert!(is_cooked(&first.termios()), "the local terminal is restored after a detach");
    assert_eq!(ps_entry(&agent, "tui")["state"], "running");

    // Same size as the remote terminal has now: the kernel would not signal
    // a resize, so the agent makes the program redraw itself.
    let mut second = attach_on_pty(&agent, "tui", 40, 120);
    let screen = second.wait_for("redraw 40 120", PROMPT);
    assert!(!screen.contains("ready"), "what the first client saw is not replayed: {screen:?}");
    ok(&run(&agent, &["kill", "tui", "-s", "KILL"]));
    assert_eq!(second.child.wait().unwrap().code(), Some(137));
    assert!(is_cooked(&second.termios()));
}

#[test]
fn a_second_client_watches_and_force_takes_the_seat_over() {
    let agent = Agent::unix();
    let go = fifo(&agent, "go");
    let script = format!("echo hello; read x < '{}'; echo bye", go.display());
    ok(&run(&agent, &["exec", "--detach", "--tag", "shared", "--", "sh", "-c", &script]));
    let spawn = |args: &[&str]| -> Child {
        agent.hutch().arg("attach").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let mut writer = spawn(&["shared"]);
    ps_until(&agent, "shared", "a writer", |e| e["attached"] == true);
    let mut viewer = spawn(&["shared"]);
    let mut viewer_err = BufReader::new(viewer.stderr.take().unwrap());
    stderr_line(&mut viewer_err, "watching read-only");
    let thief = spawn(&["--force", "shared"]);
    let mut writer_err = String::new();
    writer.stderr.take().unwrap().read_to_string(&mut writer_err).unwrap();
    assert!(writer_err.contains("took shared over"), "{writer_err}");
    assert_eq!(writer.wait().unwrap().code(), Some(0), "a client that lost its seat leaves with 0");

    release(&go);
    let thief = thief.wait_with_output().unwrap();
    assert_eq!(code(&thief), 0);
    assert!(stdout(&thief).ends_with("bye\n"), "{}", stdout(&thief));
    assert_eq!(viewer.wait().unwrap().code(), Some(0), "a viewer leaves with the session's code too");
    drop(viewer_err);
}

#[test]
fn logs_print_the_buffer_with_its_gap_and_follow_to_the_end() {
    let agent = Agent::unix();
    let (written, go) = (fifo(&agent, "written"), fifo(&agent, "go"));
    let script = format!(
        "head -c 100000 /dev/zero | tr '\\0' a; echo; echo to-stderr >&2; : > '{}'; read x < '{}'; echo last",
        written.display(),
        go.display()
    );
    ok(&run(&agent, &["exec", "--detach", "--buffer", "16K", "--tag", "l", "--", "sh", "-c", &script]));
    await_signal(&written);
    let logs = run(&agent, &["logs", "l"]);
    assert_eq!(code(&logs), 0);
    let text = stdout(&logs);
    assert!(text.len() < 16 << 10 && text.ends_with("aaaa\n"), "only the newest 16 KiB: {} bytes", text.len());
    assert!(stderr(&logs).contains("dropped here"), "{}", stderr(&logs));
    assert!(stderr(&logs).contains("to-stderr"), "{}", stderr(&logs));
    assert_eq!(ps_entry(&agent, "l")["state"], "running", "logs never touches the session");

    let follow = agent.hutch().args(["logs", "-f", "l"]).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    ps_until(&agent, "l", "a follower", |e| e["viewers"] == 1);
    release(&go);
    let out = follow.wait_with_output().unwrap();
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).ends_with("aaaa\nlast\n"), "{:?}", &stdout(&out)[stdout(&out).len().saturating_sub(20)..]);
}

#[test]
fn wait_kill_and_timeouts_give_the_exit_code_table() {
    let agent = Agent::unix();
    ok(&run(&agent, &["exec", "-d", "--tag", "sleeper", "--", "sleep", "1000"]));
    ok(&run(&agent, &["kill", "sleeper"]));
    assert_eq!(code(&run(&agent, &["wait", "sleeper"])), 143);
    assert_eq!(ps_entry(&agent, "sleeper")["signal"], "SIGTERM");

    ok(&run(&agent, &["exec", "-d", "--tag", "slow", "--timeout", "200ms", "--", "sleep", "1000"]));
    let out = run(&agent, &["wait", "slow"]);
    assert_eq!(code(&out), 124, "{}", stderr(&out));

    let out = run(&agent, &["exec", "-d", "--", "no-such-program"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    let out = run(&agent, &["wait", "nope"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("no session named \"nope\"") && stderr(&out).contains("hutch ps"), "{}", stderr(&out));
    let out = run(&agent, &["kill", "sleeper"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("already ended"), "{}", stderr(&out));
}

#[test]
fn tags_are_unique_and_checked() {
    let agent = Agent::unix();
    ok(&run(&agent, &["exec", "-d", "--tag", "web", "--", "sleep", "1000"]));
    let out = run(&agent, &["exec", "-d", "--tag", "web", "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("already named \"web\""), "{}", stderr(&out));
    let out = run(&agent, &["exec", "-d", "--tag", "../x", "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("not a valid session name"), "{}", stderr(&out));
    let out = run(&agent, &["exec", "--tag", "x", "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("--tag") && stderr(&out).contains("--detach or --keep"), "{}", stderr(&out));
    // Generated tags come from the program's name.
    assert!(ok(&run(&agent, &["exec", "-d", "--", "true"])).starts_with("true-"));
    ok(&run(&agent, &["kill", "web", "-s", "KILL"]));
}

#[test]
fn run_rm_with_a_session_is_refused_before_anything_starts() {
    let agent = Agent::unix();
    let state = tempfile::tempdir().unwrap();
    for flag in ["--detach", "--keep"] {
        let out = agent.hutch().args(["run", "--rm", flag, "--", "true"]).env("HUTCH_STATE_DIR", state.path()).output().unwrap();
        assert_eq!(code(&out), 125);
        let err = stderr(&out);
        assert!(err.contains("--rm") && err.contains(flag) && err.contains("hint:"), "{err}");
        assert!(!state.path().join("vms").exists() || std::fs::read_dir(state.path().join("vms")).unwrap().next().is_none());
    }
}

/// Peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_hundred_detached_sessions_printing_a_gigabyte_each_stay_within_their_buffers() {
    let agent = Agent::unix();
    const SESSIONS: usize = 100;
    const BUFFER: u64 = 4 << 20; // the default
    const EACH: u64 = 1 << 30;
    let count = (EACH / (256 << 10)).to_string();
    for i in 0..SESSIONS {
        let tag = format!("flood-{i}");
        let dd = ["dd", "if=/dev/zero", "bs=256k", &format!("count={count}"), "status=none"];
        let mut args = vec!["exec", "-d", "--tag", &tag, "--"];
        args.extend_from_slice(&dd);
        ok(&run(&agent, &args));
    }
    for i in 0..SESSIONS {
        assert_eq!(code(&run(&agent, &["wait", &format!("flood-{i}")])), 0);
    }
    let list: Value = serde_json::from_str(&ok(&run(&agent, &["ps", "--json"]))).unwrap();
    for entry in list.as_array().unwrap() {
        assert_eq!(entry["buffered_bytes"].as_u64(), Some(BUFFER), "{entry}");
        assert_eq!(entry["dropped_stdout_bytes"].as_u64(), Some(EACH - BUFFER), "{entry}");
    }
    let peak = peak_rss(agent.pid());
    let bound = BUFFER * SESSIONS as u64 + (16 << 20);
    assert!(peak < bound, "agent peak RSS {} MiB, bound {} MiB", peak >> 20, bound >> 20);
}

#[test]
fn sessions_end_with_the_agent_and_the_next_one_says_so() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let socket = dir.path().join("agent.sock");
    let start = |dir: tempfile::TempDir| {
        let addr = format!("unix://{}", socket.display());
        Agent::start(dir, addr, None, &["--state-dir", state.to_str().unwrap()])
    };
    let agent = start(tempfile::tempdir().unwrap());
    ok(&run(&agent, &["exec", "-d", "--tag", "survivor", "--", "sleep", "1000"]));
    let pid = ps_entry(&agent, "survivor")["pid"].as_i64().unwrap() as i32;
    let session = PidFd::open(pid).unwrap();
    // A crash: the agent cannot clean up, and its child runs on, orphaned.
    kill(Pid::from_raw(agent.pid() as i32), Signal::SIGKILL).unwrap();
    drop(agent);
    assert!(!session.wait_exit(Duration::from_millis(0)), "nothing has killed the session yet");

    let agent = start(tempfile::tempdir().unwrap());
    assert!(session.wait_exit(PROMPT), "the next agent ends what the crashed one left running");
    let entry = ps_entry(&agent, "survivor");
    assert_eq!(entry["state"], "lost");
    assert_eq!(entry["lost_reason"], "the agent restarted");
    let table = ok(&run(&agent, &["ps"]));
    assert!(table.contains("lost (the agent restarted)"), "{table}");
    let out = run(&agent, &["wait", "survivor"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("exit status is unknown"), "{}", stderr(&out));
    let out = run(&agent, &["attach", "survivor"]);
    assert_eq!(code(&out), 125);

    // A clean stop ends running sessions too.
    ok(&run(&agent, &["exec", "-d", "--tag", "second", "--", "sleep", "1000"]));
    let pid = ps_entry(&agent, "second")["pid"].as_i64().unwrap() as i32;
    let second = PidFd::open(pid).unwrap();
    agent.stop();
    assert!(second.wait_exit(PROMPT));
    let agent = start(tempfile::tempdir().unwrap());
    assert_eq!(ps_entry(&agent, "second")["state"], "lost");
}

#[test]
fn sessions_run_as_the_user_plain_execs_run_as() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: only root can start an agent with --exec-user (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}", dir.path().join("agent.sock").display());
    let agent = Agent::start(dir, addr, None, &["--exec-user", "nobody"]);
    let script = "id -u; id -g; echo $HOME";
    let plain = ok(&run(&agent, &["exec", "--", "sh", "-c", script]));
    assert_eq!(plain, "65534\n65534\n/nonexistent\n");
    assert_eq!(ok(&run(&agent, &["exec", "--detach", "--tag", "who", "--", "sh", "-c", script])), "who\n");
    assert_eq!(code(&run(&agent, &["wait", "who"])), 0);
    assert_eq!(ok(&run(&agent, &["logs", "who"])), plain, "a session runs as the user a plain exec runs as");
}

#[test]
fn a_plain_exec_still_dies_with_its_client() {
    let agent = Agent::unix();
    let (mut client, line) = spawn_until_first_line(&agent, &["exec", "--", "sh", "-c", "echo $$; exec sleep 1000"]);
    let remote = PidFd::open(line.trim().parse().unwrap()).unwrap();
    client.kill().unwrap();
    client.wait().unwrap();
    assert!(remote.wait_exit(PROMPT), "without --keep the command ends with hutch");
    let list: Value = serde_json::from_str(&ok(&run(&agent, &["ps", "--json"]))).unwrap();
    assert_eq!(list, Value::Array(Vec::new()), "a plain exec is no session");
}

#[test]
fn an_attached_writer_gets_every_byte_however_small_the_buffer() {
    let agent = Agent::unix();
    let data = pseudo_random(10_000_000, 7);
    let file = hutch_tests::write_file(agent.dir.path(), "data", &data);
    let script = format!("cat '{}'; echo to-stderr >&2", file.display());
    let out = run(&agent, &["exec", "--keep", "--buffer", "64K", "--", "sh", "-c", &script]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == data, "{} bytes of 10 MB arrived", out.stdout.len());
    assert_eq!(stderr(&out), "to-stderr\n", "no gap notice: the writer holds the session back instead");
}

#[test]
fn the_configured_keep_applies_to_commands_on_a_terminal_only() {
    let agent = Agent::unix();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("hutch.toml"), "[exec]\nkeep = true\n").unwrap();
    let hutch = || {
        let mut cmd = agent.hutch();
        cmd.current_dir(project.path()).env("XDG_CONFIG_HOME", project.path());
        cmd
    };
    let out = hutch().args(["exec", "--", "true"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(code(&out), 0);
    assert_eq!(ok(&run(&agent, &["ps", "--json"])), "[]\n", "a script's exec is no session");

    let mut on_terminal = hutch();
    on_terminal.args(["exec", "--", "sh", "-c", "echo on-a-terminal"]);
    let mut run_pty = OnPty::spawn(on_terminal, 24, 80);
    run_pty.wait_for("on-a-terminal", PROMPT);
    assert_eq!(run_pty.child.wait().unwrap().code(), Some(0));
    let list: Value = serde_json::from_str(&ok(&run(&agent, &["ps", "--json"]))).unwrap();
    assert_eq!(list[0]["argv"][2], "echo on-a-terminal", "kept, as the configuration says: {list}");

    let mut opted_out = hutch();
    opted_out.args(["exec", "--no-keep", "--", "true"]);
    assert_eq!(OnPty::spawn(opted_out, 24, 80).child.wait().unwrap().code(), Some(0));
    let list: Value = serde_json::from_str(&ok(&run(&agent, &["ps", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "--no-keep wins: {list}");
}

#[test]
fn a_third_ctrl_c_kills_what_exec_keep_started_but_only_detaches_an_attach() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let agent = Agent::unix();
    // The command says when an interrupt reached it, and lives on: only hutch
    // giving up can end it.
    let script = "trap 'echo int' INT; echo ready; while :; do sleep 1 & wait $!; done";
    let interrupt_thrice = |child: &mut Child| {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        for _ in 0..2 {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
            line.clear();
            out.read_line(&mut line).unwrap();
            assert_eq!(line, "int\n", "the first two are passed on");
        }
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    };
    let mut keep = agent
        .hutch()
        .args(["exec", "--keep", "--tag", "stubborn", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_thrice_after_ready(&mut keep, &interrupt_thrice);
    assert_eq!(keep.wait().unwrap().code(), Some(130));
    let entry = ps_until(&agent, "stubborn", "its end", |e| e["state"] == "exited");
    assert_eq!(entry["signal"], "SIGKILL", "{entry}");

    ok(&run(&agent, &["exec", "-d", "--tag", "other", "--", "sh", "-c", script]));
    let mut attach = agent.hutch().args(["attach", "other"]).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    interrupt_thrice_after_ready(&mut attach, &interrupt_thrice);
    assert_eq!(attach.wait().unwrap().code(), Some(0), "an attach detaches");
    assert_eq!(ps_entry(&agent, "other")["state"], "running");
    ok(&run(&agent, &["kill", "-s", "KILL", "other"]));
}

/// Reads up to the command's "ready" line, then runs `interrupt`.
fn interrupt_thrice_after_ready(child: &mut Child, interrupt: &dyn Fn(&mut Child)) {
    let mut stdout = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    stdout.read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    child.stdout = Some(stdout);
    interrupt(child);
}
