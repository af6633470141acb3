//! PTY mode: a real terminal on both sides, sizes and resizes, and the local
//! terminal left as it was found.

use std::process::Stdio;

use hutch_tests::pty::{OnPty, is_cooked};
use hutch_tests::{Agent, PROMPT, code};

#[test]
fn forced_tty_gives_the_command_a_terminal() {
    let agent = Agent::unix();
    let out = agent.exec(&["-t", "--", "sh", "-c", "tty; test -t 0 && test -t 1 && echo all-terminals"]);
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(text.contains("all-terminals"), "{text:?}");
}

#[test]
fn pipes_are_not_terminals_without_a_tty() {
    let agent = Agent::unix();
    let out = agent.exec(&["sh", "-c", "tty || echo no-tty"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no-tty"));
}

#[test]
fn a_local_terminal_means_a_remote_one_of_the_same_size() {
    let agent = Agent::unix();
    let mut cmd = agent.hutch();
    cmd.args(["exec", "--", "sh", "-c", "stty size; echo TERM=$TERM"]).env("TERM", "xterm-hutch-test");
    let mut run = OnPty::spawn(cmd, 33, 101);
    let screen = run.wait_for("TERM=", PROMPT);
    let status = run.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(screen.contains("33 101"), "{screen:?}");
    run.wait_for("TERM=xterm-hutch-test", PROMPT);
    assert!(is_cooked(&run.termios()), "the local terminal was not restored");
}

#[test]
fn a_local_resize_reaches_the_remote_process() {
    let agent = Agent::unix();
    let mut cmd = agent.hutch();
    let script = "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 1 & wait $!; done";
    cmd.args(["exec", "--", "sh", "-c", script]);
    let mut run = OnPty::spawn(cmd, 24, 80);
    run.wait_for("ready", PROMPT);
    run.resize(40, 132);
    run.wait_for("40 132", PROMPT);
    assert_eq!(run.child.wait().unwrap().code(), Some(0));
    assert!(is_cooked(&run.termios()));
}

#[test]
fn raw_mode_passes_keystrokes_and_is_undone_on_exit() {
    let agent = Agent::unix();
    let mut cmd = agent.hutch();
    // `head -c 3` returns after three bytes: only possible if the local
    // terminal is raw (no line buffering) and the bytes reach the remote PTY.
    cmd.args(["exec", "--", "sh", "-c", "stty raw -echo; echo go; head -c 3 | od -c | head -1"]);
    let mut run = OnPty::spawn(cmd, 24, 80);
    run.wait_for("go", PROMPT);
    assert!(!is_cooked(&run.termios()), "the local terminal should be raw while the command runs");
    run.type_bytes(b"x\x03y");
    let screen = run.wait_for("003", PROMPT);
    assert_eq!(run.child.wait().unwrap().code(), Some(0), "{screen:?}");
    assert!(screen.contains("x 003   y"), "Ctrl-C must be a byte for the remote terminal: {screen:?}");
    assert!(is_cooked(&run.termios()), "the local terminal was not restored");
}

#[test]
fn forced_tty_with_piped_stdin_sends_eof() {
    let agent = Agent::unix();
    let mut child = agent.hutch().args(["exec", "-t", "--", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"partial line").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0);
    // The terminal echoes the input and cat prints it back.
    assert!(String::from_utf8_lossy(&out.stdout).contains("partial line"));
}

#[test]
fn a_resize_sent_before_start_is_kept() {
    use hutch_proto::v1::exec_request::Kind;
    use hutch_proto::v1::{ExecRequest, Start, TerminalSize, Tty};
    let agent = Agent::unix();
    let resize = ExecRequest { kind: Some(Kind::Resize(TerminalSize { rows: 51, cols: 149 })) };
    let start = ExecRequest {
        kind: Some(Kind::Start(Start {
            argv: vec!["stty".into(), "size".into()],
            tty: Some(Tty { term: String::new(), size: None }),
            ..Default::default()
        })),
    };
    let responses = hutch_tests::raw::exec(&agent.dir.path().join("agent.sock"), vec![resize, start]);
    let out = String::from_utf8_lossy(&hutch_tests::raw::stdout_of(&responses)).into_owned();
    assert_eq!(out.trim(), "51 149");
}

#[test]
fn a_resize_right_after_start_is_applied() {
    use hutch_proto::v1::exec_request::Kind;
    use hutch_proto::v1::{ExecRequest, Start, TerminalSize, Tty};
    let agent = Agent::unix();
    let start = ExecRequest {
        kind: Some(Kind::Start(Start {
            // The shell reads a line first, so the resize is in place by the time it asks.
            argv: vec!["sh".into(), "-c".into(), "read x; stty size".into()],
            tty: Some(Tty { term: String::new(), size: Some(TerminalSize { rows: 10, cols: 20 }) }),
            ..Default::default()
        })),
    };
    let resize = ExecRequest { kind: Some(Kind::Resize(TerminalSize { rows: 60, cols: 200 })) };
    let line = ExecRequest { kind: Some(Kind::Stdin("go\n".into())) };
    let responses = hutch_tests::raw::exec(&agent.dir.path().join("agent.sock"), vec![start, resize, line]);
    let out = String::from_utf8_lossy(&hutch_tests::raw::stdout_of(&responses)).into_owned();
    assert!(out.contains("60 200"), "{out:?}");
}

#[test]
fn sigterm_in_pty_mode_ends_the_command_and_restores_the_terminal() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let agent = Agent::unix();
    let mut cmd = agent.hutch();
    cmd.args(["exec", "--", "sh", "-c", "echo ready; exec sleep 1000"]);
    let mut run = OnPty::spawn(cmd, 24, 80);
    run.wait_for("ready", PROMPT);
    assert!(!is_cooked(&run.termios()));
    kill(Pid::from_raw(run.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(run.child.wait().unwrap().code(), Some(143));
    assert!(is_cooked(&run.termios()), "the local terminal was left raw");
}
