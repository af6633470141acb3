//! A running VM's network, changed while it runs (issue 28), end to end on
//! this machine (see `hutch_tests::netvm`): `hutch allow`/`deny` with no
//! restart, `--save` into `hutch.toml`, `mode = "ask"` answered from
//! another terminal and at a prompt, secrets scoped by method and path and
//! read from a file at each use, and `tcp://` rules for programs that ignore
//! proxies.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

use hutch_tests::fakes::FakeVmm;
use hutch_tests::netvm::{NAME, SECRET, audit_lines, guest, net_pid, ok, up, vm_with_network};
use hutch_tests::pty::OnPty;
use hutch_tests::web::WebServer;
use hutch_tests::{code, free_tcp_port, stderr, stdout};

/// A guest program holding one CONNECT tunnel open through the proxy: each
/// line it reads is a path to GET on the tunnel, each line it prints the
/// status (or `closed` once the tunnel is gone).
const TUNNEL: &str = r#"
import os, socket, sys
target = sys.argv[1]
s = socket.create_connection(('127.0.0.1', int(os.environ['HTTP_PROXY'].rsplit(':', 1)[1])))
f = s.makefile('rb')
def head():
    words = f.readline().split()
    length = 0
    while True:
        line = f.readline()
        if line in (b'\r\n', b''):
            return (words[1].decode() if len(words) > 1 else 'closed'), length
        if line.lower().startswith(b'content-length:'):
            length = int(line.split(b':')[1])
s.sendall(('CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n' % (target, target)).encode())
print(head()[0], flush=True)
while True:
    path = sys.stdin.readline().strip()
    if not path:
        break
    try:
        s.sendall(('GET %s HTTP/1.1\r\nHost: %s\r\n\r\n' % (path, target)).encode())
        status, length = head()
        f.read(length)
    except OSError:
        status = 'closed'
    print(status, flush=True)
"#;

/// [`TUNNEL`] running in the guest.
struct Tunnel {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Tunnel {
    fn open(fake: &FakeVmm, target: &str) -> Tunnel {
        let mut child = fake
            .hutch()
            .args(["exec", "--name", NAME, "--", "python3", "-c", TUNNEL, target])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the guest's tunnel");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        let mut tunnel = Tunnel { child, input, output };
        assert_eq!(tunnel.line(), "200", "the CONNECT to {target} was not allowed");
        tunnel
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.output.read_line(&mut line).expect("read from the guest");
        line.trim().to_owned()
    }

    /// GETs `path` on the open tunnel; the status, or `closed`.
    fn get(&mut self, path: &str) -> String {
        writeln!(self.input, "{path}").expect("write to the guest");
        self.line()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = writeln!(self.input);
        let _ = self.child.wait();
    }
}

fn status_of(fake: &FakeVmm, url: &str) -> String {
    stdout(&guest(fake, &format!("curl -sS -o /dev/null -w '%{{http_code}}' {url}")))
}

#[test]
fn allow_and_deny_change_a_running_vm_at_once_and_cut_only_what_they_refuse() {
    let kept = WebServer::http("127.0.0.2");
    let other = WebServer::http("127.0.0.3");
    let guest_port = free_tcp_port();
    let fake = vm_with_network(&format!("[network]\nguest_port = {guest_port}\nallow = [\"{}\"]\n", kept.addr), None);
    up(&fake, &[]);
    let pid = net_pid(&fake);
    // A tunnel to an allowed host stays open across every change below.
    let mut tunnel = Tunnel::open(&fake, &kept.addr.to_string());
    assert_eq!(tunnel.get("/first"), "200");

    assert_eq!(status_of(&fake, &other.url("/before")), "403");
    let out = ok(&fake.run(&["allow", "--name", NAME, &other.addr.to_string()]));
    assert!(out.contains(&format!("{}: allowed in {NAME} (until the VM stops", other.addr)), "{out}");
    let echoed = ok(&guest(&fake, &format!("curl -sS {}", other.url("/now"))));
    assert!(echoed.starts_with("GET /now\n"), "{echoed}");
    assert_eq!(net_pid(&fake), pid, "the network process was restarted");
    assert_eq!(tunnel.get("/second"), "200", "an open connection was dropped");

    // Denied: the tunnels to that host are cut at once, the others stay.
    let mut doomed = Tunnel::open(&fake, &other.addr.to_string());
    assert_eq!(doomed.get("/a"), "200");
    let out = ok(&fake.run(&["deny", "--name", NAME, &other.addr.to_string()]));
    assert!(out.contains("cut 1 open connection") && out.contains("no longer allowed by"), "{out}");
    assert_eq!(doomed.get("/b"), "closed");
    assert_eq!(tunnel.get("/third"), "200");
    let out = guest(&fake, &format!("curl -sS -v {} 2>&1", other.url("/after")));
    assert!(stdout(&out).contains(&format!("denied by \"{}\" (hutch deny)", other.addr)), "{}", stdout(&out));
    assert_eq!(net_pid(&fake), pid);

    // A network process started again serves the changes too.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
    drop(tunnel);
    drop(doomed);
    assert_eq!(status_of(&fake, &other.url("/revived")), "403");

    // The audit log: each change, by whom, what it did.
    let lines = audit_lines(&fake);
    let changes: Vec<_> = lines.iter().filter(|l| l["event"] == "policy").collect();
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert_eq!((changes[0]["action"].as_str(), changes[0]["by"].as_str()), (Some("allow"), Some("hutch allow")));
    assert_eq!((changes[1]["action"].as_str(), changes[1]["cut"].as_u64()), (Some("deny"), Some(1)));
    let cut = lines.iter().find(|l| l["event"] == "egress" && l["reason"].as_str().is_some_and(|r| r.contains("cut while open")));
    assert!(cut.is_some(), "the cut tunnel's line says why: {lines:#?}");
    let text = ok(&fake.run(&["audit", "--name", NAME]));
    assert!(text.contains(&format!("policy deny {}  by hutch deny; undid", other.addr)), "{text}");

    // A VM that is not running: nothing to change, and the user is told why.
    ok(&fake.run(&["down", NAME]));
    let out = fake.run(&["allow", "--name", NAME, "example.com"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("no network process is running"), "{}", stderr(&out));
    ok(&fake.run(&["rm", "-f", NAME]));
}

#[test]
fn save_writes_the_rule_into_hutch_toml_and_up_takes_edits_without_a_restart() {
    let server = WebServer::http("127.0.0.3");
    let guest_port = free_tcp_port();
    let config =
        format!("# the project's rules\n[network]\nguest_port = {guest_port}  # a free one\nallow = [\n  \"pypi.org\",  # python\n]\n");
    let fake = vm_with_network(&config, None);
    up(&fake, &[]);
    let pid = net_pid(&fake);
    let toml = fake.workspace().join("hutch.toml");

    let out = ok(&fake.run(&["allow", "--name", NAME, "--save", &server.addr.to_string()]));
    assert!(out.contains(&format!("saved to {}:6", toml.display())), "{out}");
    assert_eq!(
        std::fs::read_to_string(&toml).unwrap(),
        format!(
            "# the project's rules\n[network]\nguest_port = {guest_port}  # a free one\nallow = [\n  \"pypi.org\",  # python\n  \"{}\",\n]\n",
            server.addr
        )
    );
    assert!(ok(&guest(&fake, &format!("curl -sS {}", server.url("/saved")))).starts_with("GET /saved\n"));

    // `up` reads the file again, in place: the rule is the file's now.
    up(&fake, &[]);
    assert_eq!(net_pid(&fake), pid, "up restarted the network process for a rule change");
    assert!(ok(&guest(&fake, &format!("curl -sS {}", server.url("/read")))).starts_with("GET /read\n"));
    let rule = audit_lines(&fake).into_iter().filter(|l| l["path"] == "/read").map(|l| l["rule"].clone()).next();
    assert_eq!(rule, Some(serde_json::json!(format!("\"{}\" ({}:6)", server.addr, toml.display()))));

    // An edit by hand, then `up`: in force at once, still no restart.
    let edited = std::fs::read_to_string(&toml).unwrap().replace("guest_port", &format!("deny = [\"{}\"]\nguest_port", server.addr));
    std::fs::write(&toml, edited).unwrap();
    up(&fake, &[]);
    assert_eq!(status_of(&fake, &server.url("/edited")), "403");
    assert_eq!(net_pid(&fake), pid);
    // `deny --save` of an allowed entry moves it.
    let out = ok(&fake.run(&["deny", "--name", NAME, "--save", "pypi.org"]));
    assert!(out.contains("removed from the allow list"), "{out}");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(!text.contains("\"pypi.org\",  # python") && text.contains(&format!("deny = [\"{}\", \"pypi.org\"]", server.addr)), "{text}");
    // What cannot change in place (the guest port) still restarts it.
    let moved = free_tcp_port();
    std::fs::write(&toml, text.replace(&guest_port.to_string(), &moved.to_string())).unwrap();
    up(&fake, &[]);
    assert_ne!(net_pid(&fake), pid);
    ok(&fake.run(&["rm", "-f", NAME]));
}

#[test]
fn ask_mode_holds_a_request_until_someone_answers_and_only_while_someone_watches() {
    let answered = WebServer::http("127.0.0.3");
    let ignored = WebServer::http("127.0.0.3");
    let guest_port = free_tcp_port();
    let fake = ask_vm(&format!("[network]\nmode = \"ask\"\nask_timeout = \"3s\"\nguest_port = {guest_port}\n"));
    up(&fake, &[]);

    // Nobody watching on a terminal: refused at once, as with an allow list.
    let out = guest(&fake, &format!("curl -sS -v {} 2>&1", answered.url("/alone")));
    assert!(stdout(&out).contains(&format!("allow = [\"{}\"]", answered.addr)), "{}", stdout(&out));
    let reason = audit_lines(&fake).into_iter().find(|l| l["path"] == "/alone").map(|l| l["reason"].clone());
    assert_eq!(reason, Some(serde_json::json!("not on the allow list (ask mode, but no terminal was watching to answer)")));

    // `hutch audit -f` on a terminal: the request waits, shown there, until `hutch allow` answers.
    let log = OnPty::spawn(log_follow(&fake), 40, 250);
    log.wait_for("wait for `hutch allow`/`hutch deny`", Duration::from_secs(30));
    let waiting = fake
        .hutch()
        .args(["exec", "--name", NAME, "--", "curl", "-sS", &answered.url("/asked")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    log.wait_for(&format!("ask    GET {}  waiting up to 3 s", answered.addr), Duration::from_secs(30));
    let out = ok(&fake.run(&["allow", "--name", NAME, "--once", &answered.addr.to_string()]));
    assert!(out.contains(&format!("let through once in {NAME}: {}", answered.addr)), "{out}");
    let out = waiting.wait_with_output().unwrap();
    assert!(stdout(&out).starts_with("GET /asked\n"), "{}{}", stdout(&out), stderr(&out));

    // Nobody answers: after the timeout, the same refusal, naming the rule to add.
    let out = guest(&fake, &format!("curl -sS -v {} 2>&1", ignored.url("/ignored")));
    let text = stdout(&out);
    assert!(text.contains("no answer within 3 s") && text.contains(&format!("allow = [\"{}\"]", ignored.addr)), "{text}");
    log.wait_for(&format!("ask    GET {}", ignored.addr), Duration::from_secs(5));
    drop(log);
    ok(&fake.run(&["rm", "-f", NAME]));
}

/// A VM whose network asks, as its configuration says.
fn ask_vm(config: &str) -> FakeVmm {
    let mut fake = vm_with_network(config, None);
    fake.env.retain(|(k, _)| k != "HUTCH_NETWORK");
    fake.env.push(("HUTCH_NETWORK".into(), "ask".into()));
    fake
}

/// `hutch audit -f --name net` as a command for a terminal.
fn log_follow(fake: &FakeVmm) -> std::process::Command {
    let mut cmd = fake.hutch();
    cmd.args(["audit", "-f", "--name", NAME]);
    cmd
}

#[test]
fn an_interactive_terminal_prompts_and_its_answer_decides() {
    let once = WebServer::http("127.0.0.2");
    let never = WebServer::http("127.0.0.3");
    let guest_port = free_tcp_port();
    let fake = ask_vm(&format!("[network]\nmode = \"ask\"\nguest_port = {guest_port}\n"));
    up(&fake, &[]);

    let mut exec = fake.hutch();
    exec.args(["exec", "--name", NAME, "-t", "--", "sh", "-c"]);
    exec.arg(format!(
        "curl -sS {}; echo; curl -sS -o /dev/null -w 'status %{{http_code}}\\n' {}; echo done",
        once.url("/prompted"),
        never.url("/x")
    ));
    let terminal = OnPty::spawn(exec, 40, 250);
    terminal.wait_for(
        &format!("{NAME} asks to reach {} (GET): allow [o]nce, [a]lways (while the VM runs), [d]eny?", once.addr),
        Duration::from_secs(30),
    );
    // Not an answer: ignored, the prompt stays.
    terminal.type_bytes(b"x");
    terminal.type_bytes(b"o");
    terminal.wait_for("GET /prompted", Duration::from_secs(30));
    terminal.wait_for(&format!("{NAME} asks to reach {} (GET)", never.addr), Duration::from_secs(30));
    terminal.type_bytes(b"d");
    let screen = terminal.wait_for("done", Duration::from_secs(30));
    assert!(screen.contains("status 403"), "{screen:?}");
    // "deny" lasts while the VM runs: asked no more.
    assert_eq!(status_of(&fake, &never.url("/again")), "403");
    let changes: Vec<_> = audit_lines(&fake).into_iter().filter(|l| l["event"] == "policy").collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert!(changes[0]["by"].as_str().unwrap().starts_with("the prompt of hutch"), "{changes:#?}");
    ok(&fake.run(&["rm", "-f", NAME]));
}

#[test]
fn scoped_secrets_go_only_where_their_scope_says_and_a_rotated_key_needs_no_restart() {
    let api = WebServer::https("127.0.0.2");
    let guest_port = free_tcp_port();
    let config = format!(
        "[network]\nguest_port = {guest_port}\nallow = [\"{api}\"]\n\n\
         [secrets.TEST_API_KEY]\nfrom_env = \"HOST_TEST_KEY\"\nhosts = [\"{api}\"]\nmethods = [\"GET\"]\npaths = [\"/v1/\"]\n\n\
         [secrets.FILE_KEY]\nfrom_file = \"key.txt\"\nhosts = [\"{api}\"]\n",
        api = api.addr,
    );
    let fake = vm_with_network(&config, api.ca_pem.as_deref());
    let key_file = fake.workspace().join("key.txt");
    std::fs::write(&key_file, "file-key-one\n").unwrap();
    up(&fake, &[]);
    let pid = net_pid(&fake);
    let curl = |args: &str| stdout(&guest(&fake, &format!("curl -sS {args} 2>&1")));

    let echoed = curl(&format!("-H \"Authorization: Bearer $TEST_API_KEY\" {}", api.url("/v1/models")));
    assert!(echoed.contains(&format!("authorization: Bearer {SECRET}\n")), "{echoed}");
    let refused = |args: &str, why: &str| {
        let text = curl(&format!("-o /dev/null -w '%{{http_code}}' {args}"));
        assert_eq!(text, "403", "{args}");
        let reason = audit_lines(&fake).into_iter().rev().find_map(|l| l["reason"].as_str().map(str::to_owned)).unwrap_or_default();
        assert!(reason.contains(why), "{args}: {reason}");
    };
    refused(
        &format!("-X POST -H \"Authorization: Bearer $TEST_API_KEY\" {}", api.url("/v1/models")),
        "sent with POST, which is not among its methods (GET)",
    );
    refused(&format!("-H \"Authorization: Bearer $TEST_API_KEY\" {}", api.url("/v2/models")), "which is not under its paths (/v1/)");
    refused(&format!("--path-as-is -H \"Authorization: Bearer $TEST_API_KEY\" {}", api.url("/v1/../admin")), "not under its paths");
    refused(&format!("\"{}?key=$TEST_API_KEY\"", api.url("/v1/models")), "is in the URL");
    refused(&format!("--data \"token=$FILE_KEY\" {}", api.url("/upload")), "is in the request body");

    // From a file, read at each use: a rotated key is in the next request, no restart.
    let echoed = curl(&format!("-H \"X-Key: $FILE_KEY\" {}", api.url("/file")));
    assert!(echoed.contains("x-key: file-key-one\n"), "{echoed}");
    std::fs::write(&key_file, "file-key-two\n").unwrap();
    let echoed = curl(&format!("-H \"X-Key: $FILE_KEY\" {}", api.url("/file")));
    assert!(echoed.contains("x-key: file-key-two\n"), "{echoed}");
    // From the environment: `hutch up` with the new value updates it in place.
    let mut rotated = fake.hutch();
    rotated.current_dir(fake.workspace()).env("HOST_TEST_KEY", "sk-rotated-value-9876543210");
    ok(&rotated.args(["up", "--name", NAME, "--image", "base", "--workspace", fake.workspace().to_str().unwrap()]).output().unwrap());
    let echoed = curl(&format!("-H \"Authorization: Bearer $TEST_API_KEY\" {}", api.url("/v1/rotated")));
    assert!(echoed.contains("authorization: Bearer sk-rotated-value-9876543210\n"), "{echoed}");
    assert_eq!(net_pid(&fake), pid, "a new value restarted the network process");
    let log = hutch_tests::audit_log(&fake.state());
    assert!(!log.contains(SECRET) && !log.contains("file-key-") && !log.contains("sk-rotated"), "a real value is in the audit log");
    ok(&fake.run(&["rm", "-f", NAME]));
}

#[test]
fn tcp_rules_give_programs_that_ignore_proxies_a_way_to_one_port() {
    let server = WebServer::http("127.0.0.3");
    let closed_port = free_tcp_port();
    let guest_port = free_tcp_port();
    let fake = vm_with_network(&format!("[network]\nguest_port = {guest_port}\nallow = [\"tcp://db.example.com:5432\"]\n"), None);
    up(&fake, &[]);
    // The guest resolves the rule's name to the route's address.
    let hosts = std::fs::read_to_string(fake.etc().join("hosts")).unwrap();
    assert!(hosts.contains("127.77.0.1\tdb.example.com"), "{hosts}");

    let out = ok(&fake.run(&["allow", "--name", NAME, &format!("tcp://{}", server.addr)]));
    let route = format!("127.77.0.2:{}", server.addr.port());
    assert!(out.contains(&format!("tcp://{} in the guest: connect to {route}", server.addr)), "{out}");
    // A program told to use no proxy reaches the server through the route …
    let echoed = ok(&guest(&fake, &format!("curl -sS --noproxy '*' http://{route}/direct")));
    assert!(echoed.starts_with("GET /direct\n"), "{echoed}");
    // … another port of the same host has no route, and the proxy refuses it.
    let out = guest(&fake, &format!("curl -sS --noproxy '*' http://127.77.0.2:{closed_port}/; echo \"curl $?\""));
    assert!(stdout(&out).contains("curl 7"), "{}", stdout(&out));
    assert_eq!(status_of(&fake, &format!("http://127.0.0.3:{closed_port}/")), "403");
    let lines = audit_lines(&fake);
    let tcp = lines.iter().find(|l| l["method"] == "TCP").expect("the route's connection is audited");
    assert_eq!(tcp["decision"], "allow");
    assert_eq!(tcp["addr"], server.addr.to_string());
    assert!(tcp["bytes_down"].as_u64().unwrap() > 0, "{tcp}");

    // Denied: the route's connections are refused on the host (the listener goes too).
    ok(&fake.run(&["deny", "--name", NAME, &format!("tcp://{}", server.addr)]));
    let out = guest(&fake, &format!("curl -sS --noproxy '*' http://{route}/after; echo \"curl $?\""));
    assert!(!stdout(&out).contains("GET /after"), "{}", stdout(&out));
    ok(&fake.run(&["rm", "-f", NAME]));
}
