//! A private OpenSSH server on 127.0.0.1, the one fixture for everything that
//! needs a real sshd: the `agent install` tests, `cargo xtask bench`'s SSH
//! anchor and `cargo xtask bench-sync`'s rsync over ssh.
//!
//! Debian's `/usr/sbin/sshd` runs in the foreground (`-D -e`) as the current
//! user on a free port, with a throw-away host key, user key,
//! `authorized_keys` and `known_hosts` in a temp dir. It is ready once it logs
//! "Server listening" and a real key login through [`Sshd::ssh`] has run
//! `true` (no sleeps); it is stopped (SIGTERM, reaped) on drop. Nothing is
//! installed here: `.ci/run` installs openssh-server, and callers that can do
//! without one (the benchmarks) skip with a note on [`SshdError::Missing`].

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

/// Where Debian's openssh-server installs the daemon.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Why a private sshd did not start.
#[derive(Debug)]
pub enum SshdError {
    /// [`SSHD`] is not installed.
    Missing,
    /// Setting it up or starting it failed: what was being done, and why.
    Start(String),
}

impl fmt::Display for SshdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshdError::Missing => write!(f, "{SSHD} not found: `apt-get install -y openssh-server` installs it"),
            SshdError::Start(why) => write!(f, "could not start a private sshd: {why}"),
        }
    }
}

impl std::error::Error for SshdError {}

/// `what` failed because of `e`, as an [`SshdError::Start`].
fn failed(what: &str) -> impl FnOnce(std::io::Error) -> SshdError + '_ {
    move |e| SshdError::Start(format!("{what}: {e}"))
}

/// How [`SshdBuilder::start`] configures the server; [`Sshd::builder`] makes one.
#[derive(Clone, Debug)]
pub struct SshdBuilder {
    password_auth: bool,
    session_env: Vec<String>,
    log_level: &'static str,
    dir_in: Option<PathBuf>,
}

impl SshdBuilder {
    /// Also accept password logins (key logins are always on).
    pub fn password_auth(mut self, on: bool) -> Self {
        self.password_auth = on;
        self
    }

    /// Sets `NAME=VALUE` in every session (sshd's `SetEnv`): the benchmark
    /// sets `SHLVL=1`, so bash skips `~/.bashrc` and ssh is timed alone.
    pub fn session_env(mut self, assignment: &str) -> Self {
        self.session_env.push(assignment.to_owned());
        self
    }

    /// sshd's `LogLevel` (VERBOSE unless set: its log explains failed logins
    /// in test failures).
    pub fn log_level(mut self, level: &'static str) -> Self {
        self.log_level = level;
        self
    }

    /// Makes the server's temp dir (keys, config) inside `parent` rather than
    /// the system's temp dir.
    pub fn dir_in(mut self, parent: &Path) -> Self {
        self.dir_in = Some(parent.to_owned());
        self
    }

    /// Starts the server and waits until a real login works.
    pub fn start(self) -> Result<Sshd, SshdError> {
        if !Path::new(SSHD).exists() {
            return Err(SshdError::Missing);
        }
        let mut temp = tempfile::Builder::new();
        temp.prefix("hutch-sshd-");
        let dir = match &self.dir_in {
            Some(parent) => temp.tempdir_in(parent),
            None => temp.tempdir(),
        }
        .map_err(failed("temp dir"))?;
        keygen(&dir.path().join("host_key"))?;
        keygen(&dir.path().join("id"))?;
        std::fs::copy(dir.path().join("id.pub"), dir.path().join("authorized_keys")).map_err(failed("authorized_keys"))?;
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .map_err(|e| SshdError::Start(format!("the current user: {e}")))?
            .ok_or_else(|| SshdError::Start("the current user has no passwd entry".into()))?
            .name;
        let port = crate::free_tcp_port();
        let mut sshd = Sshd { child: None, port, dir, user, log: Arc::default(), config: self };
        sshd.spawn()?;
        Ok(sshd)
    }
}

/// A running private sshd and what a client needs to log in to it.
pub struct Sshd {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Keys, config, `authorized_keys` and `known_hosts`.
    pub dir: TempDir,
    user: String,
    log: Arc<Mutex<String>>,
    config: SshdBuilder,
}

impl Sshd {
    /// A builder for a server with key logins only, `LogLevel VERBOSE`, in a
    /// dir under the system's temp dir.
    pub fn builder() -> SshdBuilder {
        SshdBuilder { password_auth: false, session_env: Vec::new(), log_level: "VERBOSE", dir_in: None }
    }

    /// For tests: starts sshd with key logins for every user whose key is in
    /// `authorized_keys` (the generated [`Sshd::user_key`] is), and password
    /// logins too when `password_auth` is set; panics if it cannot.
    pub fn start(password_auth: bool) -> Sshd {
        Sshd::builder().password_auth(password_auth).start().unwrap_or_else(|e| match e {
            SshdError::Missing => panic!("{e} (.ci/run does)"),
            SshdError::Start(_) => panic!("{e}"),
        })
    }

    /// The private key whose public half is authorized.
    pub fn user_key(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    /// The server's current host public key (OpenSSH one-line format).
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_key.pub")).expect("host key")
    }

    /// The user sessions log in as: the current one, the only user a sshd
    /// that is not root can let in.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `user@127.0.0.1`, the destination for [`Sshd::ssh`] (and rsync's `user@127.0.0.1:PATH`).
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// An `ssh` command that logs in with [`Sshd::user_key`], checks the host
    /// key against this server's own `known_hosts`, reads no config and never
    /// prompts; add options, then [`Sshd::destination`] and the remote command.
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_args());
        cmd
    }

    /// The `ssh` command line of [`Sshd::ssh`] as one string, for rsync's `-e`
    /// (arguments with spaces are single-quoted, which rsync understands).
    pub fn rsync_shell(&self) -> String {
        let quote = |arg: String| if arg.contains(char::is_whitespace) { format!("'{arg}'") } else { arg };
        std::iter::once("ssh".to_owned()).chain(self.ssh_args().into_iter().map(quote)).collect::<Vec<_>>().join(" ")
    }

    fn ssh_args(&self) -> Vec<String> {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        let options = [
            "IdentitiesOnly=yes".to_owned(),
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            format!("UserKnownHostsFile={}", path("known_hosts")),
            "LogLevel=ERROR".to_owned(),
        ];
        let mut args = vec!["-F".to_owned(), "/dev/null".to_owned(), "-p".to_owned(), self.port.to_string(), "-i".to_owned(), path("id")];
        for option in options {
            args.push("-o".to_owned());
            args.push(option);
        }
        args
    }

    /// Stops the server, gives it a new host key and starts it again on the
    /// same port: what a reinstalled machine (or a man in the middle) looks like.
    pub fn restart_with_new_host_key(&mut self) {
        self.stop();
        for name in ["host_key", "host_key.pub"] {
            std::fs::remove_file(self.dir.path().join(name)).expect("remove old host key");
        }
        keygen(&self.dir.path().join("host_key")).unwrap_or_else(|e| panic!("{e}"));
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Everything sshd logged so far (for failure messages).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Writes the config and `known_hosts` for the current host key, starts
    /// sshd and waits until it listens and a real login works.
    fn spawn(&mut self) -> Result<(), SshdError> {
        let path = |name: &str| self.dir.path().join(name);
        let host_key = std::fs::read_to_string(path("host_key.pub")).map_err(failed("host key"))?;
        std::fs::write(path("known_hosts"), format!("[127.0.0.1]:{} {host_key}", self.port)).map_err(failed("known_hosts"))?;
        let password = if self.config.password_auth { "yes" } else { "no" };
        let mut config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nAuthorizedKeysFile {keys}\nPidFile none\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPasswordAuthentication {password}\n\
             KbdInteractiveAuthentication no\nPermitEmptyPasswords no\nX11Forwarding no\nPrintMotd no\n\
             AllowStreamLocalForwarding yes\nLogLevel {level}\n",
            port = self.port,
            host_key = path("host_key").display(),
            keys = path("authorized_keys").display(),
            level = self.config.log_level,
        );
        for assignment in &self.config.session_env {
            config.push_str(&format!("SetEnv {assignment}\n"));
        }
        std::fs::write(path("sshd_config"), config).map_err(failed("sshd_config"))?;
        // sshd insists on its privilege-separation directory, which only the
        // distribution's service unit creates.
        if nix::unistd::getuid().is_root() {
            std::fs::create_dir_all("/run/sshd").map_err(failed("/run/sshd"))?;
        }
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(failed("spawn sshd"))?;
        let mut log = BufReader::new(child.stderr.take().ok_or_else(|| SshdError::Start("no sshd stderr".into()))?);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if log.read_line(&mut line).map_err(failed("read the sshd log"))? == 0 {
                let status = child.wait().map_err(failed("wait for sshd"))?;
                return Err(SshdError::Start(format!("sshd exited ({status}): {}", seen.trim())));
            }
            seen.push_str(&line);
            if line.contains("Server listening on") {
                break;
            }
        }
        *self.log.lock().map_err(|_| SshdError::Start("sshd log lock poisoned".into()))? = seen;
        // Keep draining the log so sshd never blocks on a full pipe.
        let sink = self.log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = log.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        self.child = Some(child);
        // Listening is not logging in: one real session proves the keys,
        // `known_hosts` and the config work before anyone relies on them.
        let probe = self.ssh().arg(self.destination()).arg("true").stdin(Stdio::null()).output().map_err(failed("run ssh"))?;
        if !probe.status.success() {
            self.stop();
            return Err(SshdError::Start(format!(
                "a login to the new sshd failed ({}): {}\nsshd: {}",
                probe.status,
                String::from_utf8_lossy(&probe.stderr).trim(),
                self.log().trim()
            )));
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throw-away local user with a password (and a home the test can use),
/// removed again on drop. Only root can make one.
pub struct TestUser {
    /// The login name.
    pub name: String,
    /// Its password.
    pub password: String,
    /// Its home directory (owned by it).
    pub home: PathBuf,
    _dir: TempDir,
}

impl TestUser {
    /// Creates the user, or `None` (with the reason) when this process is not root.
    pub fn create() -> Result<TestUser, String> {
        if !nix::unistd::getuid().is_root() {
            return Err("not root: cannot create a test user".into());
        }
        let dir = tempfile::Builder::new().prefix("hutch-user-").tempdir().map_err(|e| e.to_string())?;
        // The user must be able to reach its home inside this root-owned dir.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|e| e.to_string())?;
        let name = format!("hutchpw{}", std::process::id());
        let home = dir.path().join("home");
        let password = format!("pw-{}-{}", std::process::id(), crate::free_tcp_port());
        run(Command::new("useradd").args(["-M", "-s", "/bin/sh", "-d"]).arg(&home).arg(&name))?;
        let user = TestUser { name, password, home, _dir: dir };
        std::fs::create_dir_all(&user.home).map_err(|e| e.to_string())?;
        run(Command::new("chown").arg(format!("{0}:{0}", user.name)).arg(&user.home))?;
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
        if let Some(mut stdin) = chpasswd.stdin.take() {
            use std::io::Write;
            stdin.write_all(format!("{}:{}\n", user.name, user.password).as_bytes()).map_err(|e| e.to_string())?;
        }
        let status = chpasswd.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("chpasswd failed ({status})"));
        }
        Ok(user)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // The test stops what it started as this user first (by pid).
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr))) }
}

/// A new passwordless ed25519 key pair at `path` and `path.pub`.
fn keygen(path: &Path) -> Result<(), SshdError> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "hutch-sshd", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .map_err(failed("run ssh-keygen"))?;
    if status.success() { Ok(()) } else { Err(SshdError::Start(format!("ssh-keygen failed ({status})"))) }
}
