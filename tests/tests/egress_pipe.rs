//! The agent's egress pipe at the protocol level: a real agent on a Unix
//! socket (so the "guest's loopback" is this machine's), a real TCP client
//! in the role of a guest program, and raw `EgressListen` / `EgressAccept`
//! calls in the role of the host.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use hutch_proto::v1::egress_listen_response::Kind as ListenKind;
use hutch_proto::v1::forward_request::Kind as RequestKind;
use hutch_proto::v1::forward_response::Kind;
use hutch_proto::v1::{CloseWrite, EgressAccept, EgressListenRequest, ExecRequest, ForwardError, ForwardRequest, Start, exec_request};
use hutch_tests::raw::{block_on, connect, exec, stdout_of};
use hutch_tests::{Agent, PROMPT, free_tcp_port};
use tokio_stream::StreamExt;

fn agent_with_etc() -> (Agent, tempfile::TempDir) {
    let etc = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}", dir.path().join("agent.sock").display());
    let agent = Agent::start(dir, addr, None, &["--etc-dir", etc.path().to_str().unwrap()]);
    (agent, etc)
}

fn socket(agent: &Agent) -> std::path::PathBuf {
    agent.addr.trim_start_matches("unix://").into()
}

fn listen_request(port: u16) -> EgressListenRequest {
    let env = [("HTTPS_PROXY", format!("http://127.0.0.1:{port}")), ("HUTCH_TEST_PLACEHOLDER", "ph-123".to_owned())];
    EgressListenRequest {
        port: u32::from(port),
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ca_certificates: b"-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n".to_vec(),
    }
}

fn accept() -> ForwardRequest {
    ForwardRequest { kind: Some(RequestKind::Accept(EgressAccept {})) }
}

/// Connecting to `port` is refused (the listener is closed), within PROMPT.
fn wait_refused(port: u16) {
    let deadline = Instant::now() + PROMPT;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "port {port} still accepts connections");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_guest_connection_reaches_the_host_byte_exact_with_half_closes() {
    let (agent, etc) = agent_with_etc();
    let port = free_tcp_port();
    block_on(async {
        let mut client = connect(&socket(&agent)).await;
        let mut listen = client.egress_listen(listen_request(port)).await.unwrap().into_inner();
        let Some(ListenKind::Listening(listening)) = listen.message().await.unwrap().unwrap().kind else { panic!("no listening") };
        assert_eq!(listening.address, format!("127.0.0.1:{port}"));
        assert_eq!(listening.ca_bundle, etc.path().join("hutch/ca-bundle.pem").display().to_string());
        assert!(listening.configured.iter().any(|f| f.ends_with("environment")), "{listening:?}");

        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tx.send(accept()).await.unwrap();
        let mut stream = client.egress_accept(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();

        // The guest program: sends, half-closes, reads the answer to EOF.
        let guest = std::thread::spawn(move || {
            let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            conn.shutdown(Shutdown::Write).unwrap();
            let mut answer = Vec::new();
            conn.read_to_end(&mut answer).unwrap();
            answer
        });
        let Some(Kind::Accepted(accepted)) = stream.message().await.unwrap().unwrap().kind else { panic!("no accepted") };
        assert!(accepted.peer.starts_with("127.0.0.1:"), "{accepted:?}");
        let mut received = Vec::new();
        loop {
            match stream.message().await.unwrap().unwrap().kind {
                Some(Kind::Data(data)) => received.extend_from_slice(&data),
                Some(Kind::CloseWrite(_)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, b"GET / HTTP/1.1\r\n\r\n");
        let data = |bytes: &'static [u8]| ForwardRequest { kind: Some(RequestKind::Data(bytes.into())) };
        tx.send(data(b"HTTP/1.1 200 OK\r\n\r\n")).await.unwrap();
        tx.send(ForwardRequest { kind: Some(RequestKind::CloseWrite(CloseWrite {})) }).await.unwrap();
        assert!(stream.message().await.unwrap().is_none(), "the stream ends once both sides closed");
        assert_eq!(tokio::task::spawn_blocking(move || guest.join().unwrap()).await.unwrap(), b"HTTP/1.1 200 OK\r\n\r\n");

        // Every process the agent starts now gets the variables, below its own.
        let start = |env: &[(&str, &str)]| {
            let argv = ["sh", "-c", "echo $HTTPS_PROXY $HUTCH_TEST_PLACEHOLDER $SSL_CERT_FILE"].map(String::from).to_vec();
            let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            vec![ExecRequest { kind: Some(exec_request::Kind::Start(Start { argv, env, stdin: 2, ..Start::default() })) }]
        };
        let socket = socket(&agent);
        let out = tokio::task::spawn_blocking(move || {
            (stdout_of(&exec(&socket, start(&[]))), stdout_of(&exec(&socket, start(&[("HUTCH_TEST_PLACEHOLDER", "mine")]))))
        })
        .await
        .unwrap();
        let bundle = etc.path().join("hutch/ca-bundle.pem");
        assert_eq!(String::from_utf8(out.0).unwrap(), format!("http://127.0.0.1:{port} ph-123 {}\n", bundle.display()));
        assert_eq!(String::from_utf8(out.1).unwrap(), format!("http://127.0.0.1:{port} mine {}\n", bundle.display()));
        drop(listen);
    });
    // The host's call is gone: guest programs are refused, not left hanging.
    wait_refused(port);
}

#[test]
fn accept_without_a_listener_fails_and_a_new_listen_takes_over() {
    let (agent, _etc) = agent_with_etc();
    let port = free_tcp_port();
    block_on(async {
        let mut client = connect(&socket(&agent)).await;
        let mut stream = client.egress_accept(tokio_stream::iter([accept()])).await.unwrap().into_inner();
        let Some(Kind::Failed(failed)) = stream.message().await.unwrap().unwrap().kind else { panic!("expected failed") };
        assert_eq!(failed.error, ForwardError::ForwardNotListening as i32);

        let mut first = client.egress_listen(listen_request(port)).await.unwrap().into_inner();
        assert!(first.message().await.unwrap().is_some());
        let waiting = client.egress_accept(tokio_stream::iter([accept()]).chain(tokio_stream::pending())).await.unwrap().into_inner();
        let mut second = client.egress_listen(listen_request(port)).await.unwrap().into_inner();
        assert!(second.message().await.unwrap().is_some(), "the new call takes over the same port");
        let status = first.message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
        let mut waiting = waiting;
        assert_eq!(waiting.message().await.unwrap_err().code(), tonic::Code::Aborted, "accepts of the old call end too");

        // The listener still works for the new call.
        let mut stream = client.egress_accept(tokio_stream::iter([accept()]).chain(tokio_stream::pending())).await.unwrap().into_inner();
        let guest = std::thread::spawn(move || TcpStream::connect(("127.0.0.1", port)).map(|_| ()));
        assert!(matches!(stream.message().await.unwrap().unwrap().kind, Some(Kind::Accepted(_))));
        tokio::task::spawn_blocking(move || guest.join().unwrap()).await.unwrap().unwrap();

        // A port of 0 is refused.
        let status = client.egress_listen(listen_request(0)).await.unwrap().into_inner().message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        drop(second);
    });
    wait_refused(port);
}

#[test]
fn the_agent_announces_egress() {
    let (agent, _etc) = agent_with_etc();
    let info = block_on(async { connect(&socket(&agent)).await.info(hutch_proto::v1::InfoRequest {}).await.unwrap().into_inner() });
    assert!(info.capabilities.iter().any(|c| c == "egress"), "{:?}", info.capabilities);
}
