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
use hutch_proto::v1::{
    CloseWrite, EgressAccept, EgressListenRequest, EgressRoute, ExecRequest, ForwardError, ForwardRequest, Start, exec_request,
};
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
        routes: Vec::new(),
        link: None,
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
    assert!(info.capabilities.iter().any(|c| c == "egress.routes"), "{:?}", info.capabilities);
    assert!(info.capabilities.iter().any(|c| c == "egress.link"), "{:?}", info.capabilities);
}

#[test]
fn a_link_that_cannot_come_up_is_a_problem_and_leaves_the_loopback_proxy() {
    let (agent, etc) = agent_with_etc();
    let port = free_tcp_port();
    block_on(async {
        let mut client = connect(&socket(&agent)).await;
        let mut request = listen_request(port);
        // No interface of this machine has this (locally administered) address.
        request.link = Some(hutch_proto::v1::EgressLink {
            mac: "0e:00:00:68:75:01".into(),
            address: "192.168.127.2/24".into(),
            mtu: 65520,
            env: [("HTTPS_PROXY".to_owned(), "http://192.168.127.1:3128".to_owned())].into_iter().collect(),
        });
        let mut listen = client.egress_listen(request).await.unwrap().into_inner();
        let Some(ListenKind::Listening(listening)) = listen.message().await.unwrap().unwrap().kind else { panic!("no listening") };
        assert_eq!(listening.link, "", "{listening:?}");
        assert!(listening.problems.iter().any(|p| p.contains("link") && p.contains("0e:00:00:68:75:01")), "{:?}", listening.problems);
        let environment = std::fs::read_to_string(etc.path().join("environment")).unwrap();
        assert!(environment.contains(&format!("HTTPS_PROXY=http://127.0.0.1:{port}")), "{environment}");
        assert!(!environment.contains("192.168.127.1"), "{environment}");
        drop(listen);
    });
}

#[test]
fn routes_listen_on_their_own_addresses_name_themselves_and_go_with_a_listen_without_them() {
    /// Accepts the connection a guest program opens to `to`; the listener it came in on.
    async fn accepted(
        client: &mut hutch_proto::v1::agent_client::AgentClient<tonic::transport::Channel>,
        to: (&'static str, u16),
    ) -> String {
        let mut stream = client.egress_accept(tokio_stream::iter([accept()]).chain(tokio_stream::pending())).await.unwrap().into_inner();
        let guest = std::thread::spawn(move || TcpStream::connect(to).map(|_| ()));
        let Some(Kind::Accepted(accepted)) = stream.message().await.unwrap().unwrap().kind else { panic!("no accepted") };
        tokio::task::spawn_blocking(move || guest.join().unwrap()).await.unwrap().unwrap();
        accepted.local
    }

    let (agent, etc) = agent_with_etc();
    let (port, routed) = (free_tcp_port(), free_tcp_port());
    let route = |address: String, names: &[&str]| EgressRoute { address, names: names.iter().map(|n| (*n).to_owned()).collect() };
    let with_routes = |routes: Vec<EgressRoute>| EgressListenRequest { routes, ..listen_request(port) };
    block_on(async {
        let mut client = connect(&socket(&agent)).await;
        let request = with_routes(vec![
            route(format!("127.77.0.9:{routed}"), &["db.example.com"]),
            route("10.0.0.1:22".into(), &[]),
            route(format!("127.77.0.10:{routed}"), &["localhost"]),
        ]);
        let mut first = client.egress_listen(request).await.unwrap().into_inner();
        let Some(ListenKind::Listening(listening)) = first.message().await.unwrap().unwrap().kind else { panic!("no listening") };
        // What the agent will not do is said, the rest is done.
        assert_eq!(listening.problems.len(), 2, "{listening:?}");
        assert!(listening.problems.iter().any(|p| p.contains("only loopback")), "{listening:?}");
        assert!(listening.problems.iter().any(|p| p.contains("\"localhost\" is not a host name")), "{listening:?}");
        let hosts = std::fs::read_to_string(etc.path().join("hosts")).unwrap();
        assert!(hosts.contains("127.77.0.9\tdb.example.com\n"), "{hosts}");

        // A connection on the route says where it came in.
        assert_eq!(accepted(&mut client, ("127.77.0.9", routed)).await, format!("127.77.0.9:{routed}"));
        assert_eq!(accepted(&mut client, ("127.0.0.1", port)).await, format!("127.0.0.1:{port}"));

        // A new listen without the route: its listener and its name go, the proxy's stays.
        let mut second = client.egress_listen(with_routes(Vec::new())).await.unwrap().into_inner();
        assert!(second.message().await.unwrap().is_some());
        assert_eq!(first.message().await.unwrap_err().code(), tonic::Code::Aborted);
        assert!(TcpStream::connect(("127.77.0.9", routed)).is_err(), "the route's listener outlived its route");
        assert!(!std::fs::read_to_string(etc.path().join("hosts")).unwrap().contains("db.example.com"));
        assert_eq!(accepted(&mut client, ("127.0.0.1", port)).await, format!("127.0.0.1:{port}"));
        drop(second);
    });
    wait_refused(port);
}
