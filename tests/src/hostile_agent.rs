//! A hostile agent: a real gRPC server of ours, on a real Unix socket, that
//! answers `hutch.v1.Agent` calls as a compromised guest could (root in the
//! guest can replace `hutch-agent` with any program that speaks its
//! protocol): escape sequences in every text, paths out of the project,
//! exit codes out of range, floods, silence. Each test gives it a [`Plan`]:
//! for each method, a [`Script`] of HTTP/2 and gRPC steps, sent as they
//! are (messages are raw protobuf bytes, so anything protobuf can say and
//! more can be sent, at any size, and a script may stall anywhere).
//!
//! It serves plain HTTP/2 with hyper rather than a tonic service, so that
//! nothing on its side checks or fixes what it sends. The real `hutch`
//! binary is then driven against it: with `--addr`, through a VM record
//! (the multiplexer's path) and behind the fake `limactl`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// One thing the agent does on a call's response.
#[derive(Clone, Debug)]
pub enum Step {
    /// Never answer: not even response headers.
    Silent,
    /// One gRPC message: these protobuf bytes.
    Message(Vec<u8>),
    /// The same message `times` times (output floods): sent as fast as the
    /// client takes them.
    Flood {
        /// The message's bytes.
        message: Vec<u8>,
        /// How many.
        times: u64,
    },
    /// Stop sending, and never end the call.
    Hang,
    /// Wait this long, then go on (an agent that is slow, not silent).
    Pause(std::time::Duration),
    /// End the call with this gRPC status and message (trailers).
    Status(i32, String),
}

/// A call's response, step by step; without a final [`Step::Status`] or
/// [`Step::Hang`] it ends with status OK.
pub type Script = Vec<Step>;

/// What the agent answers, per method name (`"Info"`, `"Exec"`, …); other
/// methods are UNIMPLEMENTED.
#[derive(Clone, Debug, Default)]
pub struct Plan(pub HashMap<&'static str, Script>);

impl Plan {
    /// An empty plan.
    pub fn new() -> Plan {
        Plan::default()
    }

    /// `method` answers with `script`.
    pub fn on(mut self, method: &'static str, script: Script) -> Plan {
        self.0.insert(method, script);
        self
    }

    /// `method` answers with one message.
    pub fn answer(self, method: &'static str, message: &impl Message) -> Plan {
        self.on(method, vec![msg(message)])
    }

    /// What an ordinary agent says of itself, with every capability: so
    /// hutch gets as far as the attack.
    pub fn with_info(self) -> Plan {
        self.answer("Info", &ordinary_info())
    }
}

/// An `InfoResponse` a current agent would send.
pub fn ordinary_info() -> hutch_proto::v1::InfoResponse {
    hutch_proto::v1::InfoResponse {
        version: "0.1.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        protocol: hutch_proto::PROTOCOL,
        capabilities: ["exec.pty", "exec.pipes", "exec.timeout", "exec.sessions", "forward", "sync", "egress"].map(String::from).to_vec(),
        hostname: "guest".into(),
        ..Default::default()
    }
}

/// `message` as a [`Step::Message`].
pub fn msg(message: &impl Message) -> Step {
    Step::Message(message.encode_to_vec())
}

/// A running hostile agent; stops when dropped.
pub struct HostileAgent {
    /// Its Unix socket.
    pub socket: PathBuf,
    /// `unix://…` for `--addr`.
    pub addr: String,
    plan: Arc<Mutex<Plan>>,
    calls: Arc<Mutex<Vec<String>>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl HostileAgent {
    /// Serves `plan` on a fresh socket.
    pub fn start(plan: Plan) -> HostileAgent {
        Self::serve(plan, false)
    }

    /// Accepts connections and never says a byte: not even HTTP/2's
    /// preface.
    pub fn mute() -> HostileAgent {
        Self::serve(Plan::new(), true)
    }

    fn serve(plan: Plan, mute: bool) -> HostileAgent {
        let dir = tempfile::Builder::new().prefix("hha").tempdir_in("/tmp").expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let std_listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind the hostile agent");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let plan = Arc::new(Mutex::new(plan));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (plan2, calls2, requests2) = (plan.clone(), calls.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(std_listener).expect("listener");
                let mut held = Vec::new();
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        if mute {
                            held.push(stream);
                            continue;
                        }
                        let (plan, calls, requests) = (plan2.clone(), calls2.clone(), requests2.clone());
                        tokio::spawn(async move {
                            let service = service_fn(move |request| respond(request, plan.clone(), calls.clone(), requests.clone()));
                            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .max_frame_size(hutch_proto::MAX_FRAME_SIZE)
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
            runtime.shutdown_background();
        });
        let addr = format!("unix://{}", socket.display());
        HostileAgent { socket, addr, plan, calls, requests, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    /// A `hutch` aimed at this agent with `--addr` (through HUTCH_ADDR),
    /// waiting `deadline` seconds for it (HUTCH_CALL_TIMEOUT and
    /// HUTCH_CONNECT_TIMEOUT), with a private state folder and stdin from
    /// /dev/null.
    pub fn hutch(&self, deadline: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(&crate::binaries().hutch);
        cmd.env("HUTCH_ADDR", &self.addr)
            .env("HUTCH_CALL_TIMEOUT", deadline)
            .env("HUTCH_CONNECT_TIMEOUT", deadline)
            .env("HUTCH_STATE_DIR", self._dir.path().join("state"))
            .env_remove("HUTCH_TOKEN_FILE")
            .env_remove("HUTCH_LOG")
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Changes what it answers from now on.
    pub fn set_plan(&self, plan: Plan) {
        *self.plan.lock().expect("plan") = plan;
    }

    /// Request messages received so far, all calls together.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The methods called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }
}

impl Drop for HostileAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Body = StreamBody<ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

async fn respond(
    request: Request<Incoming>,
    plan: Arc<Mutex<Plan>>,
    calls: Arc<Mutex<Vec<String>>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<Response<Body>, Infallible> {
    let method = request.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    calls.lock().expect("calls").push(method.clone());
    let script = plan.lock().expect("plan").0.get(method.as_str()).cloned();
    // Whatever the client sends is read, counted (in whole gRPC messages) and
    // dropped, so it never waits on us.
    let mut body = request.into_body();
    tokio::spawn(async move {
        let mut pending = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else { continue };
            pending.extend_from_slice(&data);
            while pending.len() >= 5 {
                let len = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]) as usize;
                if pending.len() < 5 + len {
                    break;
                }
                pending.drain(..5 + len);
                requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let script = script.unwrap_or_else(|| vec![Step::Status(12, format!("{method} is not implemented"))]);
    if matches!(script.first(), Some(Step::Silent)) {
        std::future::pending::<()>().await;
    }
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for step in script {
            match step {
                Step::Silent | Step::Hang => {
                    let _keep = tx;
                    std::future::pending::<()>().await;
                    return;
                }
                Step::Pause(pause) => tokio::time::sleep(pause).await,
                Step::Message(bytes) => {
                    if tx.send(Ok(Frame::data(grpc_frame(&bytes)))).await.is_err() {
                        return;
                    }
                }
                Step::Flood { message, times } => {
                    let frame = grpc_frame(&message);
                    for _ in 0..times {
                        if tx.send(Ok(Frame::data(frame.clone()))).await.is_err() {
                            return;
                        }
                    }
                }
                Step::Status(code, message) => {
                    let _ = tx.send(Ok(Frame::trailers(trailers(code, &message)))).await;
                    return;
                }
            }
        }
        let _ = tx.send(Ok(Frame::trailers(trailers(0, "")))).await;
    });
    let mut response = Response::new(StreamBody::new(ReceiverStream::new(rx)));
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(response)
}

/// One gRPC message on the wire: uncompressed flag, length, bytes.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).expect("a message under 4 GiB").to_be_bytes());
    frame.extend_from_slice(message);
    frame.into()
}

fn trailers(code: i32, message: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("grpc-status", HeaderValue::from_str(&code.to_string()).expect("a number"));
    // Percent-encoded as gRPC says, so any byte gets through to the client.
    let encoded: String = message
        .bytes()
        .map(|b| if (0x20..0x7f).contains(&b) && b != b'%' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        map.insert("grpc-message", value);
    }
    map
}

/// Writes a VM record for `name` into the state folder `state`, its agent
/// at `addr`: commands by name then go through the multiplexer (which
/// `hutch` starts) to that agent. The backend is QEMU with no VM behind it,
/// so a failure to connect is diagnosed as a missing VM.
pub fn vm_record(state: &std::path::Path, name: &str, addr: &str, workspace: Option<&std::path::Path>) {
    let vm = state.join("vms").join(name);
    std::fs::create_dir_all(&vm).expect("create the VM folder");
    let record = serde_json::json!({
        "version": 1, "name": name, "backend": "qemu", "addr": addr, "workspace": workspace,
        "image": "/none", "cpus": 1, "memory_mib": 64, "created_unix": 1,
    });
    std::fs::write(vm.join("vm.json"), record.to_string()).expect("write the VM record");
}

/// `n` empty items of repeated field `field` (a message of `2 n` bytes
/// whose decoding makes `n` default values).
pub fn empty_items(field: u32, n: usize) -> Vec<u8> {
    let tag = u8::try_from(field << 3 | 2).expect("a small field number");
    [tag, 0].repeat(n)
}
