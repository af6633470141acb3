//! Tart's guest-agent service (`/Agent/Exec`, `/Agent/ResolveIP`) served by
//! the real hutch-agent, driven by a client generated from the Tart proto:
//! what `tart exec` and `tart ip --resolver=agent` send.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;

use hutch_proto::tart::agent_client::AgentClient;
use hutch_proto::tart::exec_request::{Command, Type as Req};
use hutch_proto::tart::exec_response::Type as Resp;
use hutch_proto::tart::{ExecRequest, IoChunk, ResolveIpRequest, TerminalSize};
use hutch_tests::Agent;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn client(agent: &Agent) -> AgentClient<Channel> {
    let socket = Path::new(agent.addr.trim_start_matches("unix://")).to_path_buf();
    let channel = Endpoint::from_static("http://agent")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect to the agent");
    AgentClient::new(channel)
}

fn command(argv: &[&str]) -> Command {
    Command { name: argv[0].into(), args: argv[1..].iter().map(|a| (*a).to_owned()).collect(), ..Command::default() }
}

fn request(r#type: Req) -> ExecRequest {
    ExecRequest { r#type: Some(r#type) }
}

/// What one Exec produced: stdout, stderr, exit code.
#[derive(Debug, Default, PartialEq)]
struct Ran {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: Option<i32>,
}

/// Runs `command`, then sends `then` without half-closing the request stream
/// (as `tart exec` keeps it open), and collects the answer.
async fn exec(client: &mut AgentClient<Channel>, command: Command, then: Vec<ExecRequest>) -> Result<Ran, tonic::Status> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(request(Req::Command(command))).await.unwrap();
    for r in then {
        tx.send(r).await.unwrap();
    }
    let mut stream = client.exec(ReceiverStream::new(rx)).await?.into_inner();
    let mut ran = Ran::default();
    while let Some(message) = stream.message().await? {
        match message.r#type {
            Some(Resp::StandardOutput(IoChunk { data })) => ran.stdout.extend(data),
            Some(Resp::StandardError(IoChunk { data })) => ran.stderr.extend(data),
            Some(Resp::Exit(exit)) => ran.code = Some(exit.code),
            _ => {}
        }
    }
    drop(tx);
    Ok(ran)
}

#[test]
fn exit_codes_and_output_are_those_tart_exec_expects() {
    let agent = Agent::unix();
    runtime().block_on(async {
        let mut c = client(&agent).await;
        let ran = exec(&mut c, command(&["sh", "-c", "echo out; echo err >&2; exit 7"]), vec![]).await.unwrap();
        assert_eq!(ran, Ran { stdout: b"out\n".to_vec(), stderr: b"err\n".to_vec(), code: Some(7) });

        let ran = exec(&mut c, command(&["sh", "-c", "kill -TERM $$"]), vec![]).await.unwrap();
        assert_eq!(ran.code, Some(143), "killed by SIGTERM is 128+15, as a shell says");

        let ran = exec(&mut c, command(&["no-such-command-here"]), vec![]).await.unwrap();
        assert_eq!(ran.code, Some(127));
        assert!(String::from_utf8_lossy(&ran.stderr).contains("no-such-command-here"), "{ran:?}");

        let mut in_tmp = command(&["pwd"]);
        in_tmp.workdir = "/tmp".into();
        in_tmp.env.insert("HUTCH_TART_TEST".into(), "yes".into());
        assert_eq!(exec(&mut c, in_tmp, vec![]).await.unwrap().stdout, b"/tmp\n");
        let mut with_env = command(&["sh", "-c", "echo $HUTCH_TART_TEST"]);
        with_env.env.insert("HUTCH_TART_TEST".into(), "yes".into());
        assert_eq!(exec(&mut c, with_env, vec![]).await.unwrap().stdout, b"yes\n");
    });
}

#[test]
fn detach_starts_a_session_that_signal_ends_and_hutch_sees() {
    use hutch_proto::tart::SignalRequest;
    use hutch_proto::tart::signal_request::Signal;
    let agent = Agent::unix();
    runtime().block_on(async {
        let mut c = client(&agent).await;
        let mut detached = command(&["sh", "-c", "echo from-tart; exec sleep 1000"]);
        detached.detach = true;
        let (tx, rx) = mpsc::channel(4);
        tx.send(request(Req::Command(detached))).await.unwrap();
        let mut stream = c.exec(ReceiverStream::new(rx)).await.unwrap().into_inner();
        let mut exec_id = None;
        let mut code = None;
        while let Some(message) = stream.message().await.unwrap() {
            match message.r#type {
                Some(Resp::Started(started)) => exec_id = Some(started.exec_id),
                Some(Resp::Exit(exit)) => code = Some(exit.code),
                other => panic!("unexpected {other:?}"),
            }
        }
        let exec_id = exec_id.expect("`started` with an exec id");
        assert_eq!(code, Some(0), "a detached command answers exit 0 at once, as tart-guest-agent does");
        assert!(exec_id.starts_with("sh-"), "{exec_id}");

        // The command runs on as a session: hutch's own commands see it.
        let ps = agent.hutch().args(["ps", "--json"]).output().unwrap();
        let list: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
        assert_eq!(list[0]["tag"], exec_id.as_str());
        assert_eq!(list[0]["state"], "running");
        let logs = agent.hutch().args(["logs", &exec_id]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&logs.stdout), "from-tart\n");

        c.signal(SignalRequest { exec_id: exec_id.clone(), signal: Signal::Sigterm as i32 }).await.expect("signal");
        let waited = agent.hutch().args(["wait", &exec_id]).output().unwrap();
        assert_eq!(waited.status.code(), Some(143));
        // As tart-guest-agent: signalling a command that has ended is no error; an unknown id is.
        c.signal(SignalRequest { exec_id, signal: Signal::Sigkill as i32 }).await.expect("signal after the end");
        let unknown = c.signal(SignalRequest { exec_id: "nope".into(), signal: Signal::Sigterm as i32 }).await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    });
}

#[test]
fn stdin_is_forwarded_only_when_interactive_and_an_empty_chunk_is_eof() {
    let agent = Agent::unix();
    runtime().block_on(async {
        let mut c = client(&agent).await;
        let mut cat = command(&["cat"]);
        cat.interactive = true;
        let input = vec![
            request(Req::StandardInput(IoChunk { data: "abc".into() })),
            request(Req::StandardInput(IoChunk { data: Default::default() })),
        ];
        // The request stream stays open: only the empty chunk can end `cat`.
        let ran = exec(&mut c, cat, input.clone()).await.unwrap();
        assert_eq!((ran.stdout.as_slice(), ran.code), (b"abc".as_slice(), Some(0)));

        let ran = exec(&mut c, command(&["cat"]), input).await.unwrap();
        assert_eq!((ran.stdout.as_slice(), ran.code), (b"".as_slice(), Some(0)), "not interactive: stdin is /dev/null");
    });
}

#[test]
fn a_tty_has_the_requested_size_and_follows_resizes() {
    let agent = Agent::unix();
    runtime().block_on(async {
        let mut c = client(&agent).await;
        let mut stty = command(&["sh", "-c", "stty size; read line; stty size"]);
        stty.tty = true;
        stty.interactive = true;
        stty.terminal_size = Some(TerminalSize { rows: 33, cols: 101 });
        let (tx, rx) = mpsc::channel(16);
        tx.send(request(Req::Command(stty))).await.unwrap();
        let mut stream = c.exec(ReceiverStream::new(rx)).await.unwrap().into_inner();
        let mut screen = String::new();
        let mut code = None;
        let mut resized = false;
        while let Some(message) = stream.message().await.unwrap() {
            match message.r#type {
                Some(Resp::StandardOutput(IoChunk { data })) => screen.push_str(&String::from_utf8_lossy(&data)),
                Some(Resp::Exit(exit)) => code = Some(exit.code),
                _ => {}
            }
            if !resized && screen.contains("33 101\r\n") {
                resized = true;
                tx.send(request(Req::TerminalResize(TerminalSize { rows: 40, cols: 132 }))).await.unwrap();
                tx.send(request(Req::StandardInput(IoChunk { data: "go\n".into() }))).await.unwrap();
            }
        }
        assert!(screen.starts_with("33 101\r\n"), "{screen:?}");
        assert!(screen.ends_with("40 132\r\n"), "{screen:?}");
        assert_eq!(code, Some(0));
    });
}

#[test]
fn resolve_ip_answers_a_local_non_loopback_ipv4_address() {
    let agent = Agent::unix();
    let ip = runtime().block_on(async { client(&agent).await.resolve_ip(ResolveIpRequest {}).await.map(|r| r.into_inner().ip) });
    match ip {
        Ok(ip) => {
            let ip: Ipv4Addr = ip.parse().expect("an IPv4 address");
            assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
            UdpSocket::bind((ip, 0)).expect("the address belongs to this machine");
        }
        // A machine with only loopback has nothing to report; say so, not lie.
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
    }
}

#[test]
fn over_tcp_the_tart_service_demands_the_token_too() {
    let agent = Agent::tcp("s3cret-token");
    let status = runtime().block_on(async {
        let mut c = AgentClient::connect(agent.addr.replace("tcp://", "http://")).await.expect("connect");
        c.resolve_ip(ResolveIpRequest {}).await.expect_err("no token")
    });
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}
