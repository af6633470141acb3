//! `hutch forward`: real host listeners tunnelled through a real agent (on a
//! Unix socket) to real TCP servers on 127.0.0.1, which is the "guest" here
//! because the agent runs on this machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;

use hutch_tests::{Agent, PROMPT, code, free_tcp_port, pseudo_random, stderr};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A guest-side server: echoes every byte, and once the client half-closes,
/// replies `bye N` (N = bytes received) and closes.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0usize;
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            total += n;
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                let _ = stream.write_all(format!("bye {total}").as_bytes());
            });
        }
    });
    port
}

/// A running `hutch forward`, stopped with SIGTERM when dropped.
struct Forward {
    child: Child,
    /// Lines hutch prints on stderr, as they come.
    stderr: mpsc::Receiver<String>,
}

impl Forward {
    /// Starts `hutch forward --addr … PORTS…` and waits for its listener lines.
    fn start(agent: &Agent, ports: &[String]) -> Forward {
        let mut child = agent
            .hutch()
            .args(["forward", "--addr", &agent.addr])
            .args(ports)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        for port in ports {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let (host, guest) = port.split_once(':').unwrap_or((port, port));
            assert_eq!(line, format!("127.0.0.1:{host} → guest :{guest}\n"));
        }
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        Forward { child, stderr: rx }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PROMPT * 6)).unwrap();
    stream
}

/// Sends `payload` (from another thread, so both directions flow at once),
/// half-closes, and returns everything read until the server closes.
fn round_trip(port: u16, payload: Vec<u8>) -> Vec<u8> {
    let mut stream = connect(port);
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&payload).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut received = Vec::new();
    stream.read_to_end(&mut received).unwrap();
    sender.join().unwrap();
    received
}

#[test]
fn bytes_and_a_half_close_cross_the_tunnel_both_ways() {
    let agent = Agent::unix();
    let guest = echo_server();
    let host = free_tcp_port();
    let _forward = Forward::start(&agent, &[format!("{host}:{guest}")]);

    let mut stream = connect(host);
    stream.write_all(b"hello").unwrap();
    let mut echoed = [0u8; 5];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"hello");
    // The server replies only once it has seen our EOF, then closes: both
    // half-closes must travel.
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "bye 5");
}

#[test]
fn ten_megabytes_round_trip_byte_exact() {
    let agent = Agent::unix();
    let guest = echo_server();
    let host = free_tcp_port();
    let _forward = Forward::start(&agent, &[format!("{host}:{guest}")]);

    let payload = pseudo_random(10 * 1024 * 1024 + 7, 8);
    let received = round_trip(host, payload.clone());
    let trailer = format!("bye {}", payload.len());
    assert_eq!(received.len(), payload.len() + trailer.len());
    assert!(received[..payload.len()] == payload[..], "the echoed bytes differ");
    assert_eq!(&received[payload.len()..], trailer.as_bytes());
}

#[test]
fn connections_are_served_concurrently_and_ports_map_independently() {
    let agent = Agent::unix();
    let (guest_a, guest_b) = (echo_server(), echo_server());
    let (host_a, host_b) = (free_tcp_port(), free_tcp_port());
    let _forward = Forward::start(&agent, &[format!("{host_a}:{guest_a}"), format!("{host_b}:{guest_b}")]);

    // A connection left open does not hold up the others.
    let mut idle = connect(host_a);
    idle.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    idle.read_exact(&mut one).unwrap();

    let workers: Vec<_> = (0..8u64)
        .map(|i| {
            let port = if i % 2 == 0 { host_a } else { host_b };
            thread::spawn(move || {
                let payload = pseudo_random(200_000 + i as usize, i + 1);
                let received = round_trip(port, payload.clone());
                assert!(received.starts_with(&payload), "connection {i} got other bytes");
                assert_eq!(&received[payload.len()..], format!("bye {}", payload.len()).as_bytes());
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }

    idle.write_all(b"y").unwrap();
    idle.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"y");
}

#[test]
fn a_refused_guest_port_closes_the_client_promptly_and_says_why() {
    let agent = Agent::unix();
    let nothing = free_tcp_port();
    let host = free_tcp_port();
    let forward = Forward::start(&agent, &[format!("{host}:{nothing}")]);

    let mut stream = TcpStream::connect(("127.0.0.1", host)).unwrap();
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF or a reset, got {other:?}"),
    }
    let line = forward.stderr.recv_timeout(PROMPT).expect("a message on stderr");
    assert!(line.contains(&format!("guest port {nothing}")) && line.contains("server running"), "{line}");
}

#[test]
fn the_guest_connection_closes_when_hutch_goes_away() {
    let agent = Agent::unix();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let guest = listener.local_addr().unwrap().port();
    let host = free_tcp_port();
    let forward = Forward::start(&agent, &[format!("{host}:{guest}")]);

    let mut client = connect(host);
    client.write_all(b"!").unwrap();
    let (mut server_side, _) = listener.accept().unwrap();
    server_side.set_read_timeout(Some(PROMPT)).unwrap();
    let mut one = [0u8; 1];
    server_side.read_exact(&mut one).unwrap();

    forward.signal(Signal::SIGKILL);
    let mut rest = Vec::new();
    match server_side.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "the guest connection stayed open: {e}"),
    }
}

#[test]
fn sigterm_stops_forwarding_and_frees_the_port() {
    let agent = Agent::unix();
    let guest = echo_server();
    let host = free_tcp_port();
    let mut forward = Forward::start(&agent, &[format!("{host}:{guest}")]);
    assert_eq!(round_trip(host, b"ok".to_vec()), b"okbye 2");

    forward.signal(Signal::SIGTERM);
    let status = forward.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    TcpListener::bind(("127.0.0.1", host)).expect("the host port is free again");
}

#[test]
fn a_busy_host_port_or_a_bad_mapping_fails_with_125() {
    let agent = Agent::unix();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = agent.hutch().args(["forward", &format!("{port}:3000")]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("host port {port} is already in use")), "{}", stderr(&out));

    for bad in ["0", "8080:0", "65536", "80:70000", "http"] {
        let out = agent.hutch().args(["forward", bad]).stdin(Stdio::null()).output().unwrap();
        assert_eq!(code(&out), 125, "{bad}: {}", stderr(&out));
    }
}

#[test]
fn the_agent_announces_forwarding() {
    let agent = Agent::unix();
    let out = agent.hutch().args(["ping", "--json", "--count", "1"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let capabilities = report["capabilities"].as_array().unwrap();
    assert!(capabilities.iter().any(|c| c == "forward"), "{capabilities:?}");
}
