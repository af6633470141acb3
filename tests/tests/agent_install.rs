//! `hutch agent install` against a real OpenSSH server on 127.0.0.1: the
//! agent is uploaded into a temp prefix, started in the background (no
//! systemd here), checked through the SSH-forwarded socket by hutch, and
//! checked again from outside with `hutch exec`. Host keys are pinned on
//! first use; a changed key is a hard error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hutch_tests::pidfd::PidFd;
use hutch_tests::sshd::{Sshd, TestUser};
use hutch_tests::{PROMPT, binaries, code, stderr, stdout};
use tempfile::TempDir;

/// A `hutch agent install` aimed at `sshd`, with its own state dir and no
/// ssh-agent or password from the environment.
fn install(sshd: &Sshd, state: &Path, user: &str, extra: &[&str]) -> Output {
    Command::new(&binaries().hutch)
        .args(["agent", "install", "--host", "127.0.0.1", "--port", &sshd.port.to_string(), "--user", user])
        .args(extra)
        .env("HUTCH_STATE_DIR", state)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("HUTCH_SSH_PASSWORD")
        .env_remove("HUTCH_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run hutch agent install")
}

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid()).expect("getpwuid").expect("a passwd entry").name
}

/// The agent an install left running in `prefix`, stopped (by its pid) when dropped.
struct Installed {
    prefix: PathBuf,
}

impl Installed {
    fn pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.prefix.join("agent.pid")).expect("agent.pid");
        text.trim().parse().expect("a pid")
    }

    fn addr(&self) -> String {
        format!("unix://{}", self.prefix.join("agent.sock").display())
    }

    fn exec(&self, command: &[&str]) -> Output {
        Command::new(&binaries().hutch)
            .args(["exec", "--addr", &self.addr(), "--"])
            .args(command)
            .stdin(Stdio::null())
            .output()
            .expect("run hutch exec")
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.prefix.join("agent.pid")) else { return };
        let Ok(pid) = text.trim().parse::<i32>() else { return };
        if let Some(process) = PidFd::open(pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            process.wait_exit(PROMPT);
        }
    }
}

fn known_hosts(state: &Path) -> String {
    std::fs::read_to_string(state.join("known_hosts")).unwrap_or_default()
}

#[test]
fn installs_into_a_prefix_answers_and_pins_the_host_key() {
    let mut sshd = Sshd::start(false);
    let state = TempDir::new().expect("state");
    let prefix = TempDir::new().expect("prefix");
    let installed = Installed { prefix: prefix.path().to_path_buf() };
    let key = sshd.user_key();
    let agent = binaries().agent.display().to_string();
    let base = ["--identity", key.to_str().expect("utf-8 path"), "--prefix", prefix.path().to_str().expect("utf-8 path"), "--no-service"];

    let out = install(&sshd, state.path(), &me(), &[&base[..], &["--agent-binary", &agent]].concat());
    assert_eq!(code(&out), 0, "stderr: {}\nsshd: {}", stderr(&out), sshd.log());
    let socket = prefix.path().join("agent.sock");
    assert!(stdout(&out).contains(&format!("answers on {}", socket.display())), "{}", stdout(&out));
    assert!(stderr(&out).contains("first connection to [127.0.0.1]:"), "{}", stderr(&out));
    let host_key = sshd.host_key();
    let key_text = host_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(known_hosts(state.path()), format!("[127.0.0.1]:{} {key_text}\n", sshd.port));
    assert_eq!(
        std::fs::read(prefix.path().join("bin/hutch-agent")).expect("installed binary"),
        std::fs::read(&binaries().agent).expect("built binary")
    );

    // From outside, as a user would: the agent the install started answers.
    let out = installed.exec(&["sh", "-c", "echo hello from $(uname -s)"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from Linux\n");
    let first = installed.pid();

    // Again, with the binary found next to hutch: the pinned key is reused and
    // the running agent is replaced by the new one.
    let old = PidFd::open(first).expect("the first agent runs");
    let out = install(&sshd, state.path(), &me(), &base);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(!stderr(&out).contains("first connection"), "{}", stderr(&out));
    assert_eq!(known_hosts(state.path()).lines().count(), 1);
    assert!(old.wait_exit(PROMPT), "the previous agent was not stopped");
    assert_ne!(installed.pid(), first);
    assert_eq!(code(&installed.exec(&["true"])), 0);

    // A new host key on the same host and port is a hard error that says what to do.
    sshd.restart_with_new_host_key();
    let second = installed.pid();
    let out = install(&sshd, state.path(), &me(), &base);
    assert_eq!(code(&out), 125, "stdout: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("the SSH host key of [127.0.0.1]:{} has changed", sshd.port)), "{err}");
    assert!(
        err.contains(&format!("delete line 1 (the one for [127.0.0.1]:{}) from {}", sshd.port, state.path().join("known_hosts").display())),
        "{err}"
    );
    assert_eq!(known_hosts(state.path()).lines().count(), 1, "a mismatching key must not be recorded");
    assert_eq!(installed.pid(), second, "nothing may be done on a host whose key changed");
    assert!(PidFd::open(second).is_some());
}

#[test]
fn wrong_keys_and_binaries_exit_125_with_a_hint() {
    let sshd = Sshd::start(false);
    let state = TempDir::new().expect("state");
    let prefix = TempDir::new().expect("prefix");
    let other = TempDir::new().expect("other key");
    let stranger = other.path().join("id");
    let status = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&stranger).status().expect("ssh-keygen");
    assert!(status.success());
    let p = prefix.path().to_str().expect("utf-8");

    let out = install(&sshd, state.path(), &me(), &["--identity", stranger.to_str().expect("utf-8"), "--prefix", p, "--no-service"]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains(&format!("{}@127.0.0.1:{} refused the SSH login (key {})", me(), sshd.port, stranger.display())),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("hint: check --user, and that the key's public half is in"), "{}", stderr(&out));

    let out = install(&sshd, state.path(), &me(), &["--identity", "/nonexistent/key", "--prefix", p, "--no-service"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("cannot use the key /nonexistent/key"), "{}", stderr(&out));

    let script = other.path().join("not-an-agent");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    let key = sshd.user_key();
    let args =
        ["--identity", key.to_str().expect("utf-8"), "--prefix", p, "--no-service", "--agent-binary", script.to_str().expect("utf-8")];
    let out = install(&sshd, state.path(), &me(), &args);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("cannot run on this guest: not an ELF executable"), "{}", stderr(&out));
    assert!(!prefix.path().join("bin").exists(), "nothing may be uploaded");

    // Without --identity, --password or an ssh-agent, hutch says what it needs.
    let out = Command::new(&binaries().hutch)
        .args(["agent", "install", "--host", "127.0.0.1", "--port", &sshd.port.to_string(), "--prefix", p, "--no-service"])
        .env("HUTCH_STATE_DIR", state.path())
        .env("HOME", other.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .expect("run hutch");
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("no SSH credentials: SSH_AUTH_SOCK is not set"), "{}", stderr(&out));
}

#[test]
fn password_login_installs_as_an_unprivileged_user() {
    let user = match TestUser::create() {
        Ok(user) => user,
        Err(why) => {
            eprintln!("skipping the password test: {why}");
            return;
        }
    };
    let sshd = Sshd::start(true);
    let state = TempDir::new().expect("state");
    let prefix = user.home.join("hutch");
    let installed = Installed { prefix: prefix.clone() };
    let agent = binaries().agent.display().to_string();
    let p = prefix.to_str().expect("utf-8");
    let with_password = |password: &str, extra: &[&str]| {
        let mut cmd = Command::new(&binaries().hutch);
        cmd.args(["agent", "install", "--host", "127.0.0.1", "--port", &sshd.port.to_string(), "--user", &user.name, "--password"])
            .args(["--agent-binary", &agent])
            .args(extra)
            .env("HUTCH_STATE_DIR", state.path())
            .env("HUTCH_SSH_PASSWORD", password)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        cmd.output().expect("run hutch")
    };

    let out = with_password("wrong", &["--prefix", p, "--no-service"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("refused the SSH login (password)"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint: check --user and the password"), "{}", stderr(&out));

    let out = with_password(&user.password, &["--prefix", p, "--no-service"]);
    assert_eq!(code(&out), 0, "stderr: {}\nsshd: {}", stderr(&out), sshd.log());
    let out = installed.exec(&["id", "-un"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), user.name, "the agent runs as the user that installed it");

    // A system-wide install needs root; this user has no passwordless sudo.
    let out = with_password(&user.password, &[]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains(&format!("{} is not root and `sudo -n` refused", user.name)), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint: log in as root (--user root), or allow"), "{}", stderr(&out));
    drop(installed);
}

/// A private `ssh-agent` holding one key, stopped when dropped.
struct SshAgent {
    child: std::process::Child,
    socket: PathBuf,
    _dir: TempDir,
}

impl SshAgent {
    fn with_key(key: &Path) -> SshAgent {
        use std::io::BufRead;
        let dir = TempDir::new().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ssh-agent");
        // It prints its environment once the socket is listening.
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read ssh-agent");
        assert!(line.contains("SSH_AUTH_SOCK"), "ssh-agent said {line:?}");
        let agent = SshAgent { child, socket, _dir: dir };
        let out = Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &agent.socket).output().expect("ssh-add");
        assert!(out.status.success(), "ssh-add: {}", stderr(&out));
        agent
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

#[test]
fn keys_from_ssh_agent_log_in() {
    let sshd = Sshd::start(false);
    let ssh_agent = SshAgent::with_key(&sshd.user_key());
    let state = TempDir::new().expect("state");
    let prefix = TempDir::new().expect("prefix");
    let installed = Installed { prefix: prefix.path().to_path_buf() };
    let out = Command::new(&binaries().hutch)
        .args(["agent", "install", "--host", "127.0.0.1", "--port", &sshd.port.to_string(), "--user", &me()])
        .args(["--prefix", prefix.path().to_str().expect("utf-8"), "--no-service"])
        .args(["--agent-binary", binaries().agent.to_str().expect("utf-8")])
        .env("HUTCH_STATE_DIR", state.path())
        .env("SSH_AUTH_SOCK", &ssh_agent.socket)
        .stdin(Stdio::null())
        .output()
        .expect("run hutch");
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(code(&installed.exec(&["true"])), 0);
}
