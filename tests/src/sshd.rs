//! A private OpenSSH server on 127.0.0.1 for tests, as `cargo xtask bench`
//! starts one: Debian's `/usr/sbin/sshd` in the foreground (`-D -e`) on a free
//! port, with a throw-away host key and user key in a temp dir. It is ready
//! once it logs "Server listening", and it is stopped (SIGTERM, reaped) on
//! drop. Nothing is installed here: `.ci/run` installs openssh-server.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

/// Where Debian's openssh-server installs the daemon.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running private sshd.
pub struct Sshd {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Keys, config and `authorized_keys`.
    pub dir: TempDir,
    log: Arc<Mutex<String>>,
    password_auth: bool,
}

impl Sshd {
    /// Starts sshd with key logins for every user whose key is in
    /// [`Sshd::authorized_keys`] (the generated [`Sshd::user_key`] is), and
    /// password logins too when `password_auth` is set.
    pub fn start(password_auth: bool) -> Sshd {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: `apt-get install -y openssh-server` (.ci/run does)");
        let dir = tempfile::Builder::new().prefix("hutch-sshd-").tempdir().expect("tempdir");
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("id"));
        std::fs::copy(dir.path().join("id.pub"), dir.path().join("authorized_keys")).expect("authorized_keys");
        let port = crate::free_tcp_port();
        let mut sshd = Sshd { child: None, port, dir, log: Arc::default(), password_auth };
        sshd.spawn();
        sshd
    }

    /// The private key whose public half is authorized.
    pub fn user_key(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    /// The server's current host public key (OpenSSH one-line format).
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_key.pub")).expect("host key")
    }

    /// Stops the server, gives it a new host key and starts it again on the
    /// same port: what a reinstalled machine (or a man in the middle) looks like.
    pub fn restart_with_new_host_key(&mut self) {
        self.stop();
        for name in ["host_key", "host_key.pub"] {
            std::fs::remove_file(self.dir.path().join(name)).expect("remove old host key");
        }
        keygen(&self.dir.path().join("host_key"));
        self.spawn();
    }

    /// Everything sshd logged so far (for failure messages).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let path = |name: &str| self.dir.path().join(name);
        let password = if self.password_auth { "yes" } else { "no" };
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nAuthorizedKeysFile {keys}\nPidFile none\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPasswordAuthentication {password}\n\
             KbdInteractiveAuthentication no\nPermitEmptyPasswords no\nX11Forwarding no\nPrintMotd no\n\
             AllowStreamLocalForwarding yes\nLogLevel VERBOSE\n",
            port = self.port,
            host_key = path("host_key").display(),
            keys = path("authorized_keys").display(),
        );
        std::fs::write(path("sshd_config"), config).expect("sshd_config");
        // sshd insists on its privilege-separation directory, which only the
        // distribution's service unit creates.
        if nix::unistd::getuid().is_root() {
            std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        }
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sshd");
        let mut log = BufReader::new(child.stderr.take().expect("sshd stderr"));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if log.read_line(&mut line).expect("read sshd log") == 0 {
                let status = child.wait().expect("wait sshd");
                panic!("sshd exited ({status}): {seen}");
            }
            seen.push_str(&line);
            if line.contains("Server listening on") {
                break;
            }
        }
        *self.log.lock().expect("log") = seen;
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

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "hutch-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed ({status})");
}
