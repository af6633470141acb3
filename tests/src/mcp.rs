//! A real MCP client that is not hutch's, for `hutch mcp`: the `mcp` Python
//! package's stdio client, through `tests/clients/mcp_bridge.py`, which the
//! tests drive one JSON line at a time. `scripts/install-deps` installs the
//! package from PyPI; without it these tests fail and say so.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

/// Fails, naming the install script, when the `mcp` package is missing.
pub fn require_mcp() {
    let found = Command::new("python3").args(["-c", "import mcp, anyio; from mcp import ClientSession, MCPError"]).output();
    let ok = found.as_ref().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "this test needs Python 3 with the `mcp` package (2.x): run scripts/install-deps (it installs it from PyPI); {}",
        found.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_else(|e| e.to_string())
    );
}

/// The Python MCP client, connected to a `hutch mcp` it started.
pub struct McpClient {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    /// What the server said it is in the handshake (`{"server", "protocol"}`).
    pub hello: Value,
}

/// What a tool call gave: a result, or an MCP (JSON-RPC) error.
#[derive(Debug)]
pub struct Answer {
    /// The whole answer from the bridge.
    pub raw: Value,
}

impl Answer {
    /// The structured result of a call that succeeded; panics otherwise.
    pub fn ok(&self) -> &Value {
        let result = &self.raw["result"];
        assert!(result.is_object() && result["is_error"] == false, "the call failed: {}", self.raw);
        &result["structured"]
    }

    /// The text of a call whose result is an error (`isError`); panics otherwise.
    pub fn tool_error(&self) -> String {
        let result = &self.raw["result"];
        assert!(result["is_error"] == true, "expected a tool error: {}", self.raw);
        result["text"].as_str().unwrap_or_default().to_owned()
    }

    /// The (code, message) of an MCP error; panics when there is none.
    pub fn mcp_error(&self) -> (i64, String) {
        let error = &self.raw["error"];
        assert!(error.is_object(), "expected an MCP error: {}", self.raw);
        (error["code"].as_i64().unwrap_or_default(), error["message"].as_str().unwrap_or_default().to_owned())
    }

    /// The progress messages the client received during the call.
    pub fn progress(&self) -> Vec<String> {
        self.raw["progress"].as_array().into_iter().flatten().filter_map(|p| p["message"].as_str().map(str::to_owned)).collect()
    }
}

impl McpClient {
    /// Starts `hutch` (the binary of `hutch`'s command, with its arguments
    /// and environment) as the client's stdio server, and initializes.
    pub fn start(hutch: &Command) -> McpClient {
        require_mcp();
        let bridge = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/mcp_bridge.py");
        let mut cmd = Command::new("python3");
        cmd.arg(bridge).arg(hutch.get_program()).args(hutch.get_args());
        if let Some(dir) = hutch.get_current_dir() {
            cmd.current_dir(dir);
        }
        for (key, value) in hutch.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start the Python MCP client");
        let input = child.stdin.take().expect("bridge stdin");
        let output = BufReader::new(child.stdout.take().expect("bridge stdout"));
        let mut client = McpClient { child, input, output, hello: Value::Null };
        client.hello = client.read();
        assert_eq!(client.hello["server"], "hutch", "{}", client.hello);
        client
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.output.read_line(&mut line).expect("read from the bridge");
        assert!(!line.is_empty(), "the MCP client ended (its errors are above)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("the bridge printed {line:?}: {e}"))
    }

    fn ask(&mut self, command: Value) -> Value {
        writeln!(self.input, "{command}").expect("write to the bridge");
        self.input.flush().expect("flush to the bridge");
        self.read()
    }

    /// `tools/list`: each tool's name, description, input and output schemas.
    pub fn tools(&mut self) -> Vec<Value> {
        self.ask(json!({"op": "list"}))["tools"].as_array().cloned().unwrap_or_default()
    }

    /// `tools/call` with a progress token.
    pub fn call(&mut self, name: &str, arguments: Value) -> Answer {
        Answer { raw: self.ask(json!({"op": "call", "name": name, "arguments": arguments})) }
    }

    /// Starts `tools/call` and cancels it when the first progress notification
    /// arrives (the command has started); the client sends `notifications/cancelled`.
    pub fn cancel(&mut self, name: &str, arguments: Value) -> Answer {
        Answer { raw: self.ask(json!({"op": "cancel", "name": name, "arguments": arguments})) }
    }

    /// Closes the session (stdin to the server closed, as clients do) and
    /// waits for the bridge, which waits for the server.
    pub fn close(mut self) -> std::process::ExitStatus {
        drop(self.input);
        self.child.wait().expect("wait for the bridge")
    }
}
