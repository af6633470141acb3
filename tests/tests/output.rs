//! Output arrives byte-exact, on the right stream, and complete before exit.

use hutch_tests::{Agent, code, pseudo_random, stderr, write_file};

#[test]
fn stdout_and_stderr_stay_apart_and_exact() {
    let agent = Agent::unix();
    let out = agent.exec(&["sh", "-c", "printf 'to out\\n'; printf 'to err\\n' >&2; printf 'more out'"]);
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout, b"to out\nmore out");
    assert_eq!(out.stderr, b"to err\n");
}

#[test]
fn fifty_megabytes_of_binary_output_arrive_byte_exact_with_the_last_bytes() {
    let agent = Agent::unix();
    let big = pseudo_random(50 * 1024 * 1024, 0x5eed);
    let small = pseudo_random(3 * 1024 * 1024 + 17, 0xbeef);
    let big_path = write_file(agent.dir.path(), "big.bin", &big);
    let small_path = write_file(agent.dir.path(), "small.bin", &small);
    // The trailing printf is the last thing the process does before exiting.
    let script = format!("cat '{}'; cat '{}' >&2; printf 'LAST'", big_path.display(), small_path.display());
    let out = agent.exec(&["sh", "-c", &script]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout.len(), big.len() + 4);
    assert!(out.stdout[..big.len()] == big[..], "stdout differs from the 50 MB file");
    assert_eq!(&out.stdout[big.len()..], b"LAST");
    assert!(out.stderr == small, "stderr differs ({} vs {} bytes)", out.stderr.len(), small.len());
}

#[test]
fn output_written_right_before_death_by_signal_is_delivered() {
    let agent = Agent::unix();
    let out = agent.exec(&["sh", "-c", "printf 'still here'; kill -KILL $$"]);
    assert_eq!(code(&out), 137);
    assert_eq!(out.stdout, b"still here");
}

#[test]
fn binary_output_survives_the_json_report() {
    let agent = Agent::unix();
    let data = pseudo_random(100_000, 7);
    let path = write_file(agent.dir.path(), "bin", &data);
    let out = agent.exec(&["--json", "--", "cat", path.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(report["stdout_base64"].as_str().unwrap()).unwrap();
    assert!(decoded == data);
}

/// Reads one field of /proc/PID/io (e.g. "wchar").
fn proc_io(pid: i32, field: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(": ")?.trim().parse().ok())
}

#[test]
fn a_reader_that_stops_reading_stops_the_writer_instead_of_growing_the_agent() {
    use std::io::Read;
    let agent = Agent::unix();
    let total: u64 = 400 << 20;
    let script = format!("echo $$ >&2; exec head -c {total} /dev/zero");
    let mut child = agent
        .hutch()
        .args(["exec", "--", "sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid_line = Vec::new();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let mut byte = [0u8; 1];
    while stderr_pipe.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        pid_line.push(byte[0]);
    }
    let pid: i32 = String::from_utf8(pid_line).unwrap().trim().parse().unwrap();
    // We never read stdout. With backpressure the writer blocks once the
    // pipes, queues and HTTP/2 windows are full: a few MiB, never 400.
    let deadline = std::time::Instant::now() + hutch_tests::PROMPT;
    let mut last = 0;
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let written = proc_io(pid, "wchar").unwrap_or(u64::MAX);
        if wchan.ends_with("pipe_write") && written == last {
            break; // blocked on a full pipe, and no progress since the last look
        }
        assert!(written < 64 << 20, "the writer got {written} bytes out with nobody reading: no backpressure");
        assert!(std::time::Instant::now() < deadline, "the writer never blocked (wchan {wchan:?}, {written} bytes)");
        last = written;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let agent_rss = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let rss_kib: u64 = agent_rss.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rss_kib < 64 * 1024, "agent RSS {rss_kib} KiB while its client is not reading");
    // Now drain: every byte still arrives.
    let mut received = 0u64;
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(received, total);
}

#[test]
fn a_non_blocking_stdout_still_gets_every_byte() {
    // A terminal or pipe shared with a program that set O_NONBLOCK on it (node
    // does) makes writes fail with EAGAIN whenever it is full; hutch must wait
    // for room, not drop the rest of the output.
    use std::io::Read;
    use std::os::fd::AsFd;
    let agent = Agent::unix();
    let data = pseudo_random(8 * 1024 * 1024, 0x0b10c);
    let path = write_file(agent.dir.path(), "data.bin", &data);
    let (mut reader, writer) = std::io::pipe().unwrap();
    let flags = nix::fcntl::OFlag::from_bits_retain(nix::fcntl::fcntl(writer.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap());
    nix::fcntl::fcntl(writer.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
    let mut child = agent
        .hutch()
        .args(["exec", "--", "cat", path.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .spawn()
        .unwrap();
    // Read in small pieces, so the 64 KiB pipe is full most of the time.
    let mut received = Vec::with_capacity(data.len());
    let mut buf = [0u8; 4096];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(received.len(), data.len());
    assert!(received == data, "stdout differs from the file");
}
