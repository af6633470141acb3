//! `hutch mcp` against a real MCP client that is not hutch's (the `mcp`
//! Python package's stdio client, see `hutch_tests::mcp`) and a real agent:
//! every tool listed and called, protocol errors answered as MCP errors, a
//! cancelled command gone from the process list, a VM that is not running
//! started as `hutch up` would (the fake Lima, whose "guest" is a real agent
//! here), and every call in the VM's audit log.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use base64::Engine;
use hutch_tests::fakes::FakeVmm;
use hutch_tests::mcp::McpClient;
use hutch_tests::{Agent, PROMPT, code, free_tcp_port, pseudo_random, stderr, stdout};
use serde_json::{Value, json};

const TOOLS: &[&str] = &[
    "exec",
    "read_file",
    "write_file",
    "list_dir",
    "glob",
    "search",
    "session_start",
    "session_logs",
    "session_wait",
    "session_kill",
    "session_list",
    "diff",
    "network",
];

/// `hutch mcp` for an agent given by address.
fn mcp_for(agent: &Agent) -> McpClient {
    let mut hutch = agent.hutch();
    hutch.arg("mcp");
    McpClient::start(&hutch)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

/// Live processes whose command line contains `needle` (this machine is the
/// "guest" of a local agent).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let pid: i32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        if cmdline.contains(needle) && hutch_tests::pidfd::proc_state(pid) != Some('Z') {
            found.push(cmdline);
        }
    }
    found
}

/// Waits (at most `within`) until no live process mentions `needle`.
fn gone(needle: &str, within: std::time::Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if processes_with(needle).is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        // A poll of /proc, not a wait for time to pass.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn every_tool_is_listed_with_its_schemas_and_answers_a_real_client() {
    let agent = Agent::unix();
    let mut mcp = mcp_for(&agent);
    let tools = mcp.tools();
    let names: Vec<&str> = tools.iter().map(|t| text(&t["name"])).collect();
    assert_eq!(names, TOOLS);
    for tool in &tools {
        assert!(text(&tool["description"]).len() > 60, "a description a model can act on: {tool}");
        assert_eq!(tool["input"]["type"], "object", "{tool}");
        assert_eq!(tool["input"]["additionalProperties"], false, "unknown arguments are refused: {tool}");
        assert_eq!(tool["output"]["type"], "object", "{tool}");
    }
    let exec = &tools[0];
    assert!(exec["input"]["properties"]["argv"]["description"].is_string(), "{exec}");
    mcp.close();
}

#[test]
fn exec_returns_the_exit_code_and_both_outputs_within_their_caps() {
    let agent = Agent::unix();
    let dir = agent.dir.path().canonicalize().unwrap();
    let mut mcp = mcp_for(&agent);

    let answer = mcp.call("exec", json!({"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]}));
    let result = answer.ok();
    assert_eq!((result["exit_code"].as_u64(), text(&result["stdout"]), text(&result["stderr"])), (Some(3), "out\n", "err\n"));
    assert_eq!(result["signal"], Value::Null);
    assert!(answer.progress().iter().any(|p| p.starts_with("started, pid ")), "{:?}", answer.progress());

    // A shell command line, with stdin, a variable and a working directory.
    let args = json!({"command": "cat; echo \"$GREETING\"; pwd", "stdin": "from stdin\n", "env": {"GREETING": "hi"}, "cwd": dir});
    let result = mcp.call("exec", args).ok().clone();
    assert_eq!(text(&result["stdout"]), format!("from stdin\nhi\n{}\n", dir.display()));
    let bytes = base64::engine::general_purpose::STANDARD.encode([0u8, 255, 10]);
    let result = mcp.call("exec", json!({"argv": ["od", "-An", "-tx1"], "stdin_base64": bytes})).ok().clone();
    assert_eq!(text(&result["stdout"]).trim(), "00 ff 0a");

    // Long output keeps its start and its end, and says how much it had.
    let all: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    let result = mcp.call("exec", json!({"command": "seq 1 100000", "max_output_bytes": 1000})).ok().clone();
    let out = text(&result["stdout"]);
    assert_eq!((result["stdout_truncated"].as_bool(), result["stdout_bytes"].as_u64()), (Some(true), Some(all.len() as u64)));
    assert!(out.starts_with("1\n2\n3\n") && out.ends_with("99999\n100000\n"), "{out}");
    assert!(out.contains(&format!("[… {} bytes cut here by hutch …]", all.len() - 1000)), "{out}");
    assert!(out.len() < 1100);

    // Timeouts and signals, as the exit-code table says.
    let result = mcp.call("exec", json!({"argv": ["sleep", "30"], "timeout_secs": 0.5})).ok().clone();
    assert_eq!((result["timed_out"].as_bool(), result["exit_code"].as_u64()), (Some(true), Some(124)));
    let result = mcp.call("exec", json!({"command": "kill -TERM $$"})).ok().clone();
    assert_eq!((result["exit_code"].as_u64(), text(&result["signal"])), (Some(143), "SIGTERM"));

    // A program that does not exist is the tool's error, saying so.
    let error = mcp.call("exec", json!({"argv": ["no-such-program-29"]})).tool_error();
    assert!(error.contains("no-such-program-29") && error.contains("127"), "{error}");
    mcp.close();
}

#[test]
fn files_round_trip_in_ranges_text_and_binary() {
    let agent = Agent::unix();
    let dir = agent.dir.path().canonicalize().unwrap();
    let mut mcp = mcp_for(&agent);
    let path = dir.join("sub/deeper/notes.txt");
    let path_text = path.to_str().unwrap();

    let result = mcp.call("write_file", json!({"path": path_text, "content": "hello wörld\n"})).ok().clone();
    assert_eq!((result["bytes_written"].as_u64(), result["size"].as_u64()), (Some(13), Some(13)));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello wörld\n", "the guest's file (here: this machine's)");
    let result = mcp.call("read_file", json!({"path": path_text})).ok().clone();
    assert_eq!((text(&result["content"]), result["size"].as_u64(), result["eof"].as_bool()), ("hello wörld\n", Some(13), Some(true)));

    // Writes at an offset keep the rest; appends add; reads take ranges, and
    // a range never ends inside a character.
    mcp.call("write_file", json!({"path": path_text, "content": "J", "offset": 0})).ok();
    let result = mcp.call("write_file", json!({"path": path_text, "content": "more\n", "append": true})).ok().clone();
    assert_eq!(result["size"].as_u64(), Some(18));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "Jello wörld\nmore\n");
    let result = mcp.call("read_file", json!({"path": path_text, "offset": 6, "length": 2})).ok().clone();
    assert_eq!((text(&result["content"]), result["length"].as_u64(), result["eof"].as_bool()), ("w", Some(1), Some(false)));

    // Binary contents in base64, read back in ranges.
    let data = pseudo_random(300_000, 29);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
    let bin = dir.join("data.bin");
    let result = mcp.call("write_file", json!({"path": bin, "content_base64": encoded})).ok().clone();
    assert_eq!(result["size"].as_u64(), Some(300_000));
    let mut back = Vec::new();
    while back.len() < data.len() {
        let result = mcp.call("read_file", json!({"path": bin, "offset": back.len(), "length": 128 * 1024})).ok().clone();
        let chunk = base64::engine::general_purpose::STANDARD.decode(text(&result["content_base64"])).unwrap();
        assert!(!chunk.is_empty());
        back.extend(chunk);
        assert_eq!(result["eof"].as_bool(), Some(back.len() == data.len()));
    }
    assert!(back == data, "300 kB round trip");

    // Errors name the file and what is wrong with it.
    let error = mcp.call("read_file", json!({"path": dir.join("missing.txt")})).tool_error();
    assert!(error.contains("missing.txt") && error.contains("No such file"), "{error}");
    let error = mcp.call("read_file", json!({"path": dir.join("sub")})).tool_error();
    assert!(error.contains("is a directory"), "{error}");
    let error = mcp.call("write_file", json!({"path": dir.join("sub"), "content": "x"})).tool_error();
    assert!(error.contains("cannot write") && error.contains("sub"), "{error}");

    // A listing: kinds, sizes, modes; odd names escaped, never raw.
    std::os::unix::fs::symlink("sub", dir.join("link")).unwrap();
    std::fs::write(dir.join("new\nline"), "").unwrap();
    std::fs::write(dir.join("esc\x1b[2J"), "").unwrap();
    std::fs::write(dir.join(".hidden"), "abc").unwrap();
    let result = mcp.call("list_dir", json!({"path": dir})).ok().clone();
    let entries = result["entries"].as_array().unwrap();
    let kind = |name: &str| entries.iter().find(|e| e["name"] == name).map(|e| e["kind"].as_str().unwrap().to_owned());
    assert_eq!(kind("sub").as_deref(), Some("dir"));
    assert_eq!(kind("link").as_deref(), Some("symlink"));
    assert_eq!(kind("data.bin").as_deref(), Some("file"));
    assert_eq!(kind("new\\nline").as_deref(), Some("file"));
    assert_eq!(kind("esc\\u{1b}[2J").as_deref(), Some("file"));
    let hidden = entries.iter().find(|e| e["name"] == ".hidden").expect(".hidden is listed");
    assert_eq!(hidden["size"].as_u64(), Some(3));
    let result = mcp.call("list_dir", json!({"path": dir, "max_entries": 2})).ok().clone();
    assert_eq!((result["entries"].as_array().unwrap().len(), result["truncated"].as_bool()), (2, Some(true)));
    mcp.close();
}

#[test]
fn glob_and_search_use_ripgrep_in_the_guest() {
    let agent = Agent::unix();
    let dir = agent.dir.path().canonicalize().unwrap();
    for (path, contents) in [
        ("src/a.rs", "fn main() {}\n// needle here\n"),
        ("src/b/c.rs", "needle\n"),
        ("notes.md", "no match\n"),
        ("ignored/x.rs", "needle\n"),
    ] {
        std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.join(path), contents).unwrap();
    }
    std::fs::write(dir.join(".gitignore"), "ignored/\n").unwrap();
    std::process::Command::new("git").arg("init").arg("-q").arg(&dir).status().unwrap();
    let mut mcp = mcp_for(&agent);
    let result = mcp.call("glob", json!({"pattern": "*.rs", "path": dir})).ok().clone();
    assert_eq!(result["files"], json!(["src/a.rs", "src/b/c.rs"]), ".gitignore is honoured");
    let result = mcp.call("glob", json!({"pattern": "*.rs", "path": dir, "no_ignore": true})).ok().clone();
    assert_eq!(result["files"].as_array().unwrap().len(), 3);

    let result = mcp.call("search", json!({"pattern": "need+le", "path": dir, "glob": "*.rs"})).ok().clone();
    let matches = result["matches"].as_array().unwrap();
    let found: Vec<(String, u64, String)> = matches
        .iter()
        .map(|m| (text(&m["path"]).replace(&format!("{}/", dir.display()), ""), m["line"].as_u64().unwrap(), text(&m["text"]).to_owned()))
        .collect();
    assert_eq!(found, [("src/a.rs".to_owned(), 2, "// needle here".to_owned()), ("src/b/c.rs".to_owned(), 1, "needle".to_owned())]);
    let result = mcp.call("search", json!({"pattern": "NEEDLE", "path": dir, "case_insensitive": true, "max_results": 1})).ok().clone();
    assert_eq!((result["matches"].as_array().unwrap().len(), result["truncated"].as_bool()), (1, Some(true)));
    let result = mcp.call("search", json!({"pattern": "nothing-matches-this", "path": dir})).ok().clone();
    assert_eq!(result["matches"], json!([]));
    mcp.close();
}

#[test]
fn sessions_start_detached_then_logs_wait_kill_and_list() {
    let agent = Agent::unix();
    let mut mcp = mcp_for(&agent);
    let started = mcp.call("session_start", json!({"command": "printf 0123456789; exit 5", "tag": "job"})).ok().clone();
    assert_eq!(started["tag"], "job");
    let ended = mcp.call("session_wait", json!({"tag": "job"})).ok().clone();
    assert_eq!((text(&ended["state"]), ended["exit_code"].as_u64()), ("exited", Some(5)));

    // The newest bytes, or the bytes from an offset on.
    let logs = mcp.call("session_logs", json!({"tag": "job"})).ok().clone();
    assert_eq!((text(&logs["output"]), logs["start_offset"].as_u64(), logs["end_offset"].as_u64()), ("0123456789", Some(0), Some(10)));
    assert_eq!(logs["exit_code"].as_u64(), Some(5));
    let logs = mcp.call("session_logs", json!({"tag": "job", "max_bytes": 4})).ok().clone();
    assert_eq!((text(&logs["output"]), logs["start_offset"].as_u64(), logs["end_offset"].as_u64()), ("6789", Some(6), Some(10)));
    let logs = mcp.call("session_logs", json!({"tag": "job", "since_offset": 2, "max_bytes": 3})).ok().clone();
    assert_eq!((text(&logs["output"]), logs["end_offset"].as_u64(), logs["more"].as_bool()), ("234", Some(5), Some(true)));
    let logs = mcp.call("session_logs", json!({"tag": "job", "since_offset": 10})).ok().clone();
    assert_eq!((text(&logs["output"]), logs["start_offset"].as_u64(), logs["more"].as_bool()), ("", Some(10), Some(false)));

    // A running session: listed, then killed, then its end says how.
    mcp.call("session_start", json!({"argv": ["sleep", "3529"], "tag": "sleeper"})).ok();
    let list = mcp.call("session_list", json!({})).ok().clone();
    let sleeper = list["sessions"].as_array().unwrap().iter().find(|s| s["tag"] == "sleeper").cloned().expect("listed");
    assert_eq!((sleeper["state"].as_str(), sleeper["argv"].clone()), (Some("running"), json!(["sleep", "3529"])));
    let killed = mcp.call("session_kill", json!({"tag": "sleeper"})).ok().clone();
    assert_eq!(killed["signal"], "SIGTERM");
    let ended = mcp.call("session_wait", json!({"tag": "sleeper"})).ok().clone();
    assert_eq!((ended["exit_code"].as_u64(), text(&ended["signal"])), (Some(143), "SIGTERM"));

    // Errors are the tool's: what is wrong and what to do.
    let error = mcp.call("session_logs", json!({"tag": "nobody"})).tool_error();
    assert!(error.contains("no session named \"nobody\""), "{error}");
    let error = mcp.call("session_kill", json!({"tag": "job"})).tool_error();
    assert!(error.contains("has already ended"), "{error}");
    // A wait that times out leaves the session running.
    mcp.call("session_start", json!({"argv": ["sleep", "3530"], "tag": "long"})).ok();
    let waited = mcp.call("session_wait", json!({"tag": "long", "timeout_secs": 0.2})).ok().clone();
    assert_eq!(text(&waited["state"]), "running");
    mcp.call("session_kill", json!({"tag": "long", "signal": "KILL"})).ok();

    // An agent given by address has no --ro snapshot and no hutch network.
    assert!(mcp.call("diff", json!({})).tool_error().contains("no snapshot to diff"));
    assert!(mcp.call("network", json!({})).tool_error().contains("does not control its network"));
    mcp.close();
}

#[test]
fn protocol_errors_are_mcp_errors_and_the_server_serves_on() {
    let agent = Agent::unix();
    let mut mcp = mcp_for(&agent);
    let invalid = -32602;
    let (code_, message) = mcp.call("no_such_tool", json!({})).mcp_error();
    assert_eq!(code_, invalid);
    assert!(message.contains("no tool named \"no_such_tool\""), "{message}");
    for (tool, args, says) in [
        ("exec", json!({"argv": "not a list"}), "invalid type"),
        ("exec", json!({"argv": ["true"], "command": "true"}), "not both"),
        ("exec", json!({}), "give the command to run"),
        ("exec", json!({"argv": ["true"], "timeout_secs": -1}), "positive"),
        ("read_file", json!({}), "missing field `path`"),
        ("write_file", json!({"path": "/tmp/x", "content": "a", "contents": "b"}), "unknown field `contents`"),
        ("write_file", json!({"path": "/tmp/x", "content_base64": "%%%"}), "not base64"),
        ("session_wait", json!({"tag": 3}), "invalid type"),
    ] {
        let (got, message) = mcp.call(tool, args.clone()).mcp_error();
        assert_eq!(got, invalid, "{tool} {args}: {message}");
        assert!(message.contains(says), "{tool} {args}: {message}");
    }
    let result = mcp.call("exec", json!({"argv": ["echo", "still here"]})).ok().clone();
    assert_eq!(text(&result["stdout"]), "still here\n");
    assert!(mcp.close().success());

    // Below the client: lines that are not JSON-RPC, a method that does not
    // exist, then a real session on the same stdin. Every line on stdout is
    // JSON-RPC, and the server leaves with 0 when stdin closes.
    let mut hutch = agent.hutch();
    let mut server = hutch.arg("mcp").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = server.stdin.take().unwrap();
    let lines = [
        "this is not json".to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":2,"method":"no/such/method","params":{}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"exec","arguments":{"argv":["echo","raw"]}}}"#.to_owned(),
    ];
    for line in &lines {
        writeln!(input, "{line}").unwrap();
    }
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut answers = Vec::new();
    while !answers.iter().any(|a: &Value| a["id"] == 3) {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "the server ended early");
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON on stdout: {line:?}: {e}"));
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        answers.push(answer);
    }
    let by_id = |id: i64| answers.iter().find(|a| a["id"] == id).unwrap_or_else(|| panic!("no answer {id}: {answers:?}"));
    assert_eq!(by_id(1)["result"]["serverInfo"]["name"], "hutch");
    assert_eq!(by_id(2)["error"]["code"], -32601);
    assert_eq!(by_id(3)["result"]["structuredContent"]["stdout"], "raw\n");
    drop(input);
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_cancelled_command_is_killed_with_its_process_group() {
    let agent = Agent::unix();
    let mut mcp = mcp_for(&agent);
    // SIGINT ends it at once.
    let answer = mcp.cancel("exec", json!({"command": "sleep 3521; echo not reached"}));
    assert_eq!(answer.raw["cancelled"], true, "{}", answer.raw);
    assert!(gone("sleep 3521", PROMPT), "{:?}", processes_with("sleep 3521"));
    // A group that ignores SIGINT (a background job too): SIGKILL follows.
    let answer = mcp.cancel("exec", json!({"command": "trap '' INT; sleep 3522 & sleep 3523; wait"}));
    assert_eq!(answer.raw["cancelled"], true, "{}", answer.raw);
    assert!(gone("sleep 3522", PROMPT) && gone("sleep 3523", PROMPT), "{:?}", processes_with("sleep 352"));
    // The server serves on.
    let result = mcp.call("exec", json!({"argv": ["echo", "after"]})).ok().clone();
    assert_eq!(text(&result["stdout"]), "after\n");
    // A client that goes away takes its running commands along.
    let mut hutch = agent.hutch();
    let mut server = hutch.arg("mcp").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut input = server.stdin.take().unwrap();
    writeln!(input, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"raw","version":"0"}}}}}}"#).unwrap();
    writeln!(input, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).unwrap();
    writeln!(input, r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"exec","arguments":{{"argv":["sleep","3524"]}},"_meta":{{"progressToken":7}}}}}}"#).unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("started, pid") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the server ended early");
    }
    drop(input);
    assert_eq!(server.wait().unwrap().code(), Some(0));
    assert!(gone("sleep 3524", PROMPT), "{:?}", processes_with("sleep 3524"));
    mcp.close();
}

/// A Lima VM (the fake, with a real agent as its guest) not yet created,
/// whose project has `hutch.toml` with `config`.
fn lima_project(config: &str) -> FakeVmm {
    let mut fake = FakeVmm::lima();
    std::fs::write(fake.workspace().join("hutch.toml"), config).unwrap();
    fake.env.push(("HUTCH_IMAGE".into(), "base".into()));
    fake
}

/// `hutch mcp --name NAME` in the fake's project folder.
fn mcp_in(fake: &FakeVmm, name: &str) -> Command {
    let mut hutch = fake.hutch();
    hutch.args(["mcp", "--name", name]).current_dir(fake.workspace());
    hutch
}

#[test]
fn a_vm_that_is_not_running_is_started_as_hutch_up_would_and_every_call_is_audited() {
    let port = free_tcp_port();
    let fake = lima_project(&format!("[network]\nguest_port = {port}\nallow = [\"example.org\"]\n"));
    let mut hutch = mcp_in(&fake, "web");
    hutch.env("HUTCH_NETWORK", "allow");
    let mut mcp = McpClient::start(&hutch);
    let ws = fake.workspace();

    // The first call starts it, saying so in its progress.
    let answer = mcp.call("exec", json!({"command": "pwd; echo hi"}));
    let result = answer.ok();
    assert_eq!(text(&result["stdout"]), format!("{}\nhi\n", ws.display()), "commands run in the project");
    assert!(answer.progress().iter().any(|p| p.contains("starting VM web")), "{:?}", answer.progress());
    let listed: Value = serde_json::from_str(&stdout(&fake.run(&["ls", "--json"]))).unwrap();
    assert_eq!(listed[0]["name"], "web");
    assert_eq!(listed[0]["state"], "running");
    assert_eq!(listed[0]["workspace"], ws.to_str().unwrap());

    // Files, an error, a cancellation.
    mcp.call("write_file", json!({"path": "made-by-mcp.txt", "content": "relative to the project\n"})).ok();
    assert_eq!(std::fs::read_to_string(ws.join("made-by-mcp.txt")).unwrap(), "relative to the project\n");
    mcp.call("read_file", json!({"path": "made-by-mcp.txt"})).ok();
    mcp.call("read_file", json!({"path": "nope.txt"})).tool_error();
    mcp.call("exec", json!({"argv": 1})).mcp_error();
    assert_eq!(mcp.cancel("exec", json!({"argv": ["sleep", "3525"]})).raw["cancelled"], true);

    // The network: the rules with their sources, and what was refused.
    let refused = mcp.call("exec", json!({"command": "curl -sS https://example.com/ 2>&1; true"})).ok().clone();
    assert!(text(&refused["stdout"]).contains("403"), "{refused}");
    let network = mcp.call("network", json!({})).ok().clone();
    assert_eq!((network["serving"].as_bool(), text(&network["mode"])), (Some(true), "allow"));
    let allowed = network["allow"].as_array().unwrap().iter().find(|r| r["pattern"] == "example.org").expect("the project's rule").clone();
    assert_eq!(text(&allowed["source"]), format!("{}:3", ws.join("hutch.toml").display()));
    let denial = network["denials"].as_array().unwrap().last().cloned().expect("the refusal");
    assert_eq!(
        (text(&denial["host"]), denial["port"].as_u64(), text(&denial["reason"])),
        ("example.com", Some(443), "not on the allow list")
    );
    // A rule added while the VM runs (`hutch allow`) is part of the policy it reports.
    assert!(!network["allow"].as_array().unwrap().iter().any(|r| r["pattern"] == "example.com"));
    let allowed = fake.hutch().args(["allow", "--name", "web", "example.com"]).current_dir(&ws).output().unwrap();
    assert_eq!(code(&allowed), 0, "{}", stderr(&allowed));
    let network = mcp.call("network", json!({})).ok().clone();
    let live = network["allow"].as_array().unwrap().iter().find(|r| r["pattern"] == "example.com").expect("the live rule").clone();
    assert_eq!(text(&live["source"]), "hutch allow");
    assert!(mcp.close().success());

    // One line per call in the project's audit log, whatever became of it.
    let log = hutch_tests::audit_log(&fake.state());
    let tools: Vec<Value> = log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|l| l["event"] == "tool").collect();
    let names: Vec<&str> = tools.iter().map(|t| text(&t["tool"])).collect();
    assert_eq!(names, ["exec", "write_file", "read_file", "read_file", "exec", "exec", "exec", "network", "network"], "{log}");
    assert_eq!((tools[0]["argv"].clone(), tools[0]["exit_code"].as_i64()), (json!(["sh", "-c", "pwd; echo hi"]), Some(0)));
    assert!(text(&tools[0]["client"]).starts_with("mcp "), "{}", tools[0]);
    assert_eq!(text(&tools[1]["path"]), "made-by-mcp.txt");
    assert!(text(&tools[3]["error"]).contains("nope.txt"), "{}", tools[3]);
    assert!(text(&tools[4]["error"]).contains("bad arguments"), "{}", tools[4]);
    assert_eq!(tools[5]["cancelled"], true, "{}", tools[5]);
    let out = fake.run(&["audit", "web"]);
    assert!(stdout(&out).contains("mcp    exec          exit 0  sh -c pwd; echo hi"), "{}", stdout(&out));
    assert_eq!(code(&fake.run(&["rm", "-f", "web"])), 0);
}

#[test]
fn stdout_carries_only_the_protocol_while_a_vm_boots_and_its_hook_runs() {
    let fake = lima_project("");
    std::fs::create_dir_all(fake.workspace().join(".hutch")).unwrap();
    std::fs::write(fake.workspace().join(".hutch/runtime.sh"), "echo hook says hello; echo hook err >&2\n").unwrap();
    let errors = fake.root.path().join("mcp-stderr.txt");
    let mut server =
        mcp_in(&fake, "boot").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(std::fs::File::create(&errors).unwrap()).spawn().unwrap();
    let mut input = server.stdin.take().unwrap();
    for line in [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"exec","arguments":{"argv":["echo","booted"]},"_meta":{"progressToken":"p"}}}"#,
    ] {
        writeln!(input, "{line}").unwrap();
    }
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut progress = Vec::new();
    let result = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "the server ended early: {}", std::fs::read_to_string(&errors).unwrap());
        let message: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON-RPC on stdout: {line:?}: {e}"));
        assert_eq!(message["jsonrpc"], "2.0", "{message}");
        match message["method"].as_str() {
            Some("notifications/progress") => progress.push(message["params"]["message"].as_str().unwrap_or_default().to_owned()),
            _ if message["id"] == 2 => break message,
            _ => {}
        }
    };
    assert_eq!(result["result"]["structuredContent"]["stdout"], "booted\n", "{result}");
    assert!(progress.iter().any(|p| p.contains("starting VM boot")), "{progress:?}");
    drop(input);
    assert_eq!(server.wait().unwrap().code(), Some(0));
    let said = std::fs::read_to_string(&errors).unwrap();
    assert!(said.contains("hook says hello") && said.contains("hook err") && said.contains("starting VM boot"), "{said}");
    assert_eq!(code(&fake.run(&["rm", "-f", "boot"])), 0, "{}", stderr(&fake.run(&["ls"])));
}

#[test]
fn a_ro_vm_returns_its_changes_as_a_patch_and_keeps_them_across_servers() {
    // The "guest" keeps its snapshot under a prefix: here it shares the host's files.
    let snapshots = tempfile::tempdir().unwrap();
    let fake = FakeVmm::lima_with(&["--snapshot-prefix", snapshots.path().to_str().unwrap()]);
    let ws = fake.workspace();
    std::fs::write(ws.join("kept.txt"), "one\ntwo\n").unwrap();
    let out = fake.run(&["up", "--name", "ro", "--ro", "--image", "base", "--workspace", ws.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let copy = format!("{}{}/kept.txt", snapshots.path().display(), ws.display());
    let mut mcp = McpClient::start(&mcp_in(&fake, "ro"));
    mcp.call("write_file", json!({"path": copy, "content": "three\n", "append": true})).ok();
    let diff = mcp.call("diff", json!({})).ok().clone();
    let patch = text(&diff["patch"]);
    assert!(patch.contains("+++ b/kept.txt") && patch.contains("+three"), "{patch}");
    assert_eq!(diff["files"].as_u64(), Some(1));
    assert!(mcp.close().success());
    assert_eq!(std::fs::read_to_string(ws.join("kept.txt")).unwrap(), "one\ntwo\n", "the host's project is untouched");

    // A new server (the client restarted) does not re-sync the copy: the
    // changes are still there for it.
    let mut mcp = McpClient::start(&mcp_in(&fake, "ro"));
    let result = mcp.call("read_file", json!({"path": copy})).ok().clone();
    assert_eq!(text(&result["content"]), "one\ntwo\nthree\n");
    assert!(text(&mcp.call("diff", json!({})).ok()["patch"]).contains("+three"));
    mcp.close();
    assert_eq!(code(&fake.run(&["rm", "-f", "ro"])), 0);
}
