//! A real third-party gRPC client against the real agent: Python's grpcio
//! with its default options over the agent's Unix socket, which sends the
//! socket path, percent-encoded, as `:authority` (as grpc-java, Bazel and
//! grpc-swift do), on both the hutch.v1 service and Tart's `Agent` service.
//!
//! grpcio and grpcio-tools come from PyPI through `scripts/install-deps`;
//! without them this test fails and says so: it never skips.

use std::path::Path;
use std::process::Command;

use hutch_tests::Agent;

/// The Python client: stubs generated from the repository's protos, one
/// channel with default options, three calls. Prints one JSON object.
const CLIENT: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[2])
import grpc
from hutch.v1 import agent_pb2 as h, agent_pb2_grpc as hg
from tart import agent_pb2 as t, agent_pb2_grpc as tg

channel = grpc.insecure_channel("unix:" + sys.argv[1])
out = {"grpcio": grpc.__version__}
hutch = hg.AgentStub(channel)
out["version"] = hutch.Info(h.InfoRequest(), timeout=30).version

def start():
    yield h.ExecRequest(start=h.Start(argv=["sh", "-c", "echo from-hutch; exit 3"], stdin=h.STDIN_NULL))
answers = list(hutch.Exec(start(), timeout=30))
out["hutch_stdout"] = b"".join(a.stdout for a in answers if a.WhichOneof("kind") == "stdout").decode()
out["hutch_code"] = [a.exited.code for a in answers if a.WhichOneof("kind") == "exited"]

def command():
    yield t.ExecRequest(command=t.ExecRequest.Command(name="sh", args=["-c", "echo from-tart; exit 4"]))
answers = list(tg.AgentStub(channel).Exec(command(), timeout=30))
out["tart_stdout"] = b"".join(a.standard_output.data for a in answers if a.WhichOneof("type") == "standard_output").decode()
out["tart_code"] = [a.exit.code for a in answers if a.WhichOneof("type") == "exit"]
print(json.dumps(out))
"#;

/// Fails, naming the install script, when grpcio or grpcio-tools is missing.
fn require_grpcio() {
    let found = Command::new("python3").args(["-c", "import grpc, grpc_tools.protoc"]).output();
    let ok = found.as_ref().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "this test needs Python 3 with grpcio and grpcio-tools: run scripts/install-deps (it installs them from PyPI); {}",
        found.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_else(|e| e.to_string())
    );
}

/// Generates the Python stubs for both protos into `out`.
fn generate_stubs(out: &Path) {
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let generated = Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", protos.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(["hutch/v1/agent.proto", "tart/agent.proto"])
        .output()
        .expect("run grpc_tools.protoc");
    assert!(generated.status.success(), "protoc failed: {}", String::from_utf8_lossy(&generated.stderr));
}

#[test]
fn python_grpcio_with_default_options_reaches_both_services_over_the_unix_socket() {
    require_grpcio();
    let agent = Agent::unix();
    let stubs = tempfile::tempdir().unwrap();
    generate_stubs(stubs.path());
    let ran = Command::new("python3")
        .args(["-c", CLIENT])
        .arg(agent.socket())
        .arg(stubs.path())
        // grpcio's own logging would only repeat its errors.
        .env("GRPC_VERBOSITY", "NONE")
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "the grpcio client failed:\n{stdout}\n{}", String::from_utf8_lossy(&ran.stderr));
    let out: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the client's JSON");
    assert_eq!(out["version"], env!("CARGO_PKG_VERSION"), "{out}");
    assert_eq!((out["hutch_stdout"].as_str(), &out["hutch_code"]), (Some("from-hutch\n"), &serde_json::json!([3])), "{out}");
    assert_eq!((out["tart_stdout"].as_str(), &out["tart_code"]), (Some("from-tart\n"), &serde_json::json!([4])), "{out}");
}
