//! The agent's connections under hostile clients: connections that never
//! speak HTTP/2, more connections than descriptors, more streams than a
//! connection may open, and `:authority` values no URI allows. The limits
//! are those of `guest-agent/src/limits.rs`.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hutch_tests::h2raw::{self, Conn, frame};
use hutch_tests::pidfd::proc_cpu_ticks;
use hutch_tests::rss::{assert_back_under_limit, status_kib};
use hutch_tests::{Agent, PROMPT, binaries, code, free_tcp_port, stderr};

/// `limits::HANDSHAKE_TIMEOUT`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `limits::MAX_CONNECTIONS`.
const MAX_CONNECTIONS: usize = 128;
/// `limits::MAX_STREAMS_PER_CONNECTION`.
const MAX_STREAMS: u32 = 256;

/// Descriptors the agent has open.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// CPU time the agent has used, in clock ticks (user + system).
fn cpu_ticks(pid: u32) -> u64 {
    proc_cpu_ticks(pid as i32).expect("the agent is running")
}

#[test]
fn connections_that_never_send_the_preface_are_closed() {
    let agent = Agent::unix();
    let idle: Vec<UnixStream> = (0..20).map(|_| UnixStream::connect(agent.socket()).unwrap()).collect();
    let begin = Instant::now();
    for mut conn in idle {
        conn.set_read_timeout(Some(HANDSHAKE_TIMEOUT + PROMPT)).unwrap();
        let mut buf = [0u8; 64];
        // The agent's own SETTINGS may come first; then the end.
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a connection that sent nothing is still open after {:?}: {e}", begin.elapsed()),
            }
        }
    }
    assert_back_under_limit(agent.pid(), "connections that never spoke");
}

#[test]
fn idle_connections_past_the_cap_wait_and_a_real_client_is_served_once_they_time_out() {
    let agent = Agent::unix();
    let pid = agent.pid();
    let _idle: Vec<UnixStream> = (0..MAX_CONNECTIONS + 50).map(|_| UnixStream::connect(agent.socket()).unwrap()).collect();
    // Behind them, a real client: served once the agent has room.
    let out = agent.exec(&["echo", "served"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let open = fds(pid);
    assert!(open < MAX_CONNECTIONS + 40, "the agent holds {open} descriptors: it took more connections than its cap");
    assert_back_under_limit(pid, "a flood of idle connections");
}

#[test]
fn an_agent_out_of_descriptors_backs_off_and_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let addr = format!("tcp://127.0.0.1:{}", free_tcp_port());
    let mut limited = Command::new("sh");
    limited.arg("-c").arg("ulimit -n 64 && exec \"$0\" \"$@\"").arg(&binaries().agent);
    let agent = Agent::spawn(limited, dir, addr.clone(), Some(token), &[], None);
    let pid = agent.pid();
    let target = addr.trim_start_matches("tcp://").to_owned();
    // More than its descriptors allow, but few enough that once the first
    // ones time out, the rest, the client and its command's pipes fit: with
    // 100, the second round of idle connections took the descriptors again
    // and the command's spawn failed (EMFILE, exit 125), which is a clean
    // refusal but not the recovery this test is about.
    let _idle: Vec<std::net::TcpStream> = (0..70).map(|_| std::net::TcpStream::connect(&target).unwrap()).collect();
    let before = cpu_ticks(pid);
    // The agent serves again once the idle connections' handshake deadline
    // frees their descriptors, HANDSHAKE_TIMEOUT after they came; the client
    // queues behind them, so its own connect and call deadlines (10 s and
    // 30 s by default) must not be what decides the race, which is the agent's.
    let mut child = agent
        .hutch()
        .args(["exec", "--", "true"])
        .env("HUTCH_CONNECT_TIMEOUT", "90s")
        .env("HUTCH_CALL_TIMEOUT", "90s")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT * 3 + PROMPT * 4;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("an authenticated call was not served while idle connections held every descriptor");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
    }
    assert!(status.success(), "{status:?}: {err}");
    let ticks = cpu_ticks(pid) - before;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = u64::try_from(unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }).unwrap_or(100);
    assert!(ticks < per_second, "the agent burned {ticks} ticks (at {per_second}/s) waiting for descriptors: it spins on EMFILE");
    assert_back_under_limit(pid, "running out of descriptors");
}

#[test]
fn streams_past_the_per_connection_limit_are_refused_and_memory_comes_back() {
    let agent = Agent::unix();
    let pid = agent.pid();
    let mut conn = Conn::connect(&agent.socket()).unwrap();
    let settings = loop {
        let f = conn.read_frame().unwrap().expect("the agent's SETTINGS");
        if f.kind == h2raw::SETTINGS && f.flags & 0x1 == 0 {
            break f.settings();
        }
    };
    let advertised = settings.iter().find(|(id, _)| *id == h2raw::MAX_CONCURRENT_STREAMS).map(|(_, v)| *v);
    assert_eq!(advertised, Some(MAX_STREAMS), "SETTINGS_MAX_CONCURRENT_STREAMS: {settings:?}");

    const OPENED: u32 = 20_000;
    let block = h2raw::grpc_request("/hutch.v1.Agent/Exec", "agent");
    let mut writer = conn.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..OPENED {
            batch.extend(frame(h2raw::HEADERS, 0x4, 1 + 2 * i, &block));
            if batch.len() > 64 * 1024 {
                if std::io::Write::write_all(&mut writer, &batch).is_err() {
                    return;
                }
                batch.clear();
            }
        }
        let _ = std::io::Write::write_all(&mut writer, &batch);
    });
    let (mut answered, mut refused) = (0u32, 0u32);
    while let Some(f) = conn.read_frame().unwrap() {
        match f.kind {
            h2raw::HEADERS => answered += 1,
            h2raw::RST_STREAM => refused += 1,
            h2raw::GOAWAY => break,
            _ => {}
        }
        if answered + refused >= OPENED {
            break;
        }
    }
    assert!(answered <= MAX_STREAMS, "the agent served {answered} streams at once on one connection");
    let peak = status_kib(pid, "VmHWM");
    assert!(peak < 48 * 1024, "the agent's peak RSS was {peak} KiB");
    drop(conn);
    let _ = sender.join();
    assert_back_under_limit(pid, "20000 streams on one connection");
}

#[test]
fn any_authority_is_accepted_on_the_unix_socket() {
    let agent = Agent::unix();
    for authority in [agent.socket().display().to_string(), "%2Ftmp%2Fagent.sock".to_owned(), "not a host:name!".to_owned()] {
        let mut conn = Conn::connect(&agent.socket()).unwrap();
        let request = [
            frame(h2raw::HEADERS, 0x4, 1, &h2raw::grpc_request("/hutch.v1.Agent/Info", &authority)),
            frame(h2raw::DATA, 0x1, 1, &[0, 0, 0, 0, 0]),
        ]
        .concat();
        std::io::Write::write_all(&mut conn.stream, &request).unwrap();
        let answer = loop {
            let f = conn.read_frame().unwrap().expect("an answer");
            if f.stream == 1 {
                break f;
            }
        };
        assert_eq!(answer.kind, h2raw::HEADERS, "authority {authority:?} was answered with {answer:?}");
    }
}
