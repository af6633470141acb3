//! Turning a `Start` request into a running child, or into a typed start failure.
//!
//! Every child leads a new process group whose id is its pid: signals, timeouts
//! and cancellation act on that group, which holds whatever the command started
//! too. In PTY mode the child also gets its own session (`setsid`) with the
//! terminal's slave as controlling terminal. In pipe mode a new group is
//! enough when the agent runs as a daemon (no controlling terminal to escape),
//! and it lets std use posix_spawn instead of fork; an agent started from a
//! terminal still gives each child its own session.
//!
//! Start failures are classified before and after `spawn` so the host can map
//! them to the exit codes `env(1)` and shells use: 127 not found, 126 not
//! executable, 125 for a bad working directory or an invalid request.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};

use hutch_proto::v1::{StartError, StdinMode};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::pipe2;
use tokio::process::{Child, Command};

use super::fd::AsyncPipe;
use super::pty::{self, Pty};

/// What to run, validated from a `Start` message.
pub struct Spec {
    /// Program and arguments; never empty.
    pub argv: Vec<String>,
    /// Extra environment, on top of the agent's own.
    pub env: HashMap<String, String>,
    /// Working directory, if the client asked for one.
    pub cwd: Option<PathBuf>,
    /// Whether the child gets a stdin pipe or /dev/null.
    pub stdin: StdinMode,
    /// Terminal settings in PTY mode; `None` for pipes.
    pub tty: Option<TtySpec>,
}

/// PTY-mode settings.
pub struct TtySpec {
    /// TERM for the child.
    pub term: String,
    /// Initial rows.
    pub rows: u16,
    /// Initial columns.
    pub cols: u16,
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    /// No such program.
    #[error("{0}")]
    NotFound(String),
    /// The program exists but cannot be executed.
    #[error("{0}")]
    NotExecutable(String),
    /// The working directory is missing or not a directory.
    #[error("{0}")]
    BadCwd(String),
    /// The request does not describe a process.
    #[error("{0}")]
    Invalid(String),
    /// Anything else the OS refused (out of fds, out of memory...).
    #[error("{0}")]
    Other(String),
}

impl StartFailure {
    /// The protocol's code for this failure.
    pub fn kind(&self) -> StartError {
        match self {
            StartFailure::NotFound(_) => StartError::NotFound,
            StartFailure::NotExecutable(_) => StartError::NotExecutable,
            StartFailure::BadCwd(_) => StartError::BadCwd,
            StartFailure::Invalid(_) => StartError::InvalidRequest,
            StartFailure::Other(_) => StartError::Unspecified,
        }
    }
}

/// The agent's ends of the child's standard streams.
pub enum ChildIo {
    /// Pipe mode: separate stdout and stderr; stdin only with `STDIN_PIPE`.
    Pipes {
        /// Write end of the child's stdin, if it has a pipe.
        stdin: Option<AsyncPipe>,
        /// Read end of the child's stdout.
        stdout: AsyncPipe,
        /// Read end of the child's stderr.
        stderr: AsyncPipe,
    },
    /// PTY mode: one master for input, output and resizes.
    Pty {
        /// The terminal's master side.
        master: Arc<AsyncPipe>,
    },
}

/// A started child and the agent's ends of its streams.
pub struct Spawned {
    /// The child, reaped through tokio (pidfd-based on Linux).
    pub child: Child,
    /// Its pid, which is also its process-group id (and its session id in PTY
    /// mode, or when the agent has a controlling terminal).
    pub pid: i32,
    /// The agent's ends of its stdio.
    pub io: ChildIo,
}

/// Starts the process described by `spec`.
pub fn spawn(spec: &Spec) -> Result<Spawned, StartFailure> {
    if let Some(cwd) = &spec.cwd {
        check_cwd(cwd)?;
    }
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..]);
    if let Some(user) = super::user::get() {
        // Its ids, and its identity in the environment (the request's own
        // variables still win). std then forks instead of posix_spawn.
        cmd.uid(user.uid).gid(user.gid);
        cmd.env("HOME", &user.home).env("USER", &user.name).env("LOGNAME", &user.name).env("SHELL", &user.shell);
    }
    // The egress proxy's variables before the call's own, so the call's win.
    cmd.envs(crate::egress::env::defaults()).envs(&spec.env).kill_on_drop(false);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let other = |what: &str, e: io::Error| StartFailure::Other(format!("{what}: {e}"));

    let (io, with_tty) = match &spec.tty {
        None => {
            let stdin = match spec.stdin {
                StdinMode::StdinNull => {
                    cmd.stdin(Stdio::null());
                    None
                }
                StdinMode::StdinPipe | StdinMode::Unspecified => {
                    let (read, write) = cloexec_pipe().map_err(|e| other("creating the stdin pipe", e))?;
                    cmd.stdin(Stdio::from(read));
                    Some(write)
                }
            };
            let (out_read, out_write) = cloexec_pipe().map_err(|e| other("creating the stdout pipe", e))?;
            let (err_read, err_write) = cloexec_pipe().map_err(|e| other("creating the stderr pipe", e))?;
            enlarge(&out_read);
            cmd.stdout(Stdio::from(out_write)).stderr(Stdio::from(err_write));
            let pipe = |fd| AsyncPipe::new(fd).map_err(|e| other("registering a pipe", e));
            let stdin = stdin.map(pipe).transpose()?;
            (ChildIo::Pipes { stdin, stdout: pipe(out_read)?, stderr: pipe(err_read)? }, false)
        }
        Some(tty) => {
            let Pty { master, slave } = Pty::open(tty.rows, tty.cols).map_err(|e| other("allocating a terminal", e))?;
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| other("duplicating the terminal", e));
            cmd.stdin(Stdio::from(dup(&slave)?)).stdout(Stdio::from(dup(&slave)?)).stderr(Stdio::from(slave));
            if !spec.env.contains_key("TERM") {
                cmd.env("TERM", &tty.term);
            }
            let master = AsyncPipe::new(master).map_err(|e| other("registering the terminal", e))?;
            (ChildIo::Pty { master: Arc::new(master) }, true)
        }
    };

    if with_tty || agent_has_controlling_terminal() {
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls (setsid, ioctl).
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid()?;
                if with_tty {
                    pty::make_controlling_terminal()?;
                }
                Ok(())
            });
        }
    } else {
        // The agent has no controlling terminal, so a new group gives the child
        // everything a new session would. Without a `pre_exec` closure std
        // starts it with posix_spawn (vfork-like: no copy of the agent's page
        // tables), which saves a measurable part of every exec.
        cmd.process_group(0);
    }

    let child = cmd.spawn().map_err(|e| classify(&spec.argv[0], e))?;
    // `cmd` (and with it the child's ends of every pipe and the PTY slave) is
    // dropped when this function returns, so EOF/EIO arrive when the child's
    // side closes.
    let pid = child.id().map(|p| p as i32).ok_or_else(|| StartFailure::Other("the process vanished at start".into()))?;
    Ok(Spawned { child, pid, io })
}

/// Whether the agent itself has a controlling terminal (it was started from
/// a shell rather than as a daemon). Then pipe-mode children still get a new
/// session, so none of them can open that terminal through `/dev/tty`. Asked
/// once: the agent opens every terminal with `O_NOCTTY`, so this never changes.
fn agent_has_controlling_terminal() -> bool {
    static HAS_CTTY: OnceLock<bool> = OnceLock::new();
    *HAS_CTTY.get_or_init(|| open("/dev/tty", OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty()).is_ok())
}

fn check_cwd(cwd: &Path) -> Result<(), StartFailure> {
    let shown = || crate::untrusted::shown(cwd.as_os_str().as_encoded_bytes());
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(StartFailure::BadCwd(format!("working directory {}: not a directory", shown()))),
        Err(e) => Err(StartFailure::BadCwd(format!("working directory {}: {e}", shown()))),
    }
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(pipe2(OFlag::O_CLOEXEC)?)
}

/// Room for one full output chunk of unread output in a child's stdout pipe:
/// a fast writer keeps going while the agent sends the previous chunk, and
/// the agent reads it back in whole chunks instead of one writer-sized piece
/// per wake-up. Not more: the kernel charges a pipe's capacity to its user
/// (`fs.pipe-user-pages-soft`, 64 MiB), and an unprivileged agent past that
/// budget would leave every new pipe of its user one page small.
#[cfg(target_os = "linux")]
const PIPE_CAPACITY: nix::libc::c_int = crate::exec::output::OUTPUT_CHUNK as nix::libc::c_int;

/// Grows a pipe to [`PIPE_CAPACITY`] (Linux; the kernel allocates pages only
/// as they fill). Best effort: past the per-user pipe budget the kernel says
/// no, and the pipe keeps its 64 KiB.
fn enlarge(pipe: &OwnedFd) {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_CAPACITY)) {
        tracing::debug!("keeping the default pipe size: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pipe;
}

/// Maps the errno of a failed `execve` to the protocol's categories.
fn classify(argv0: &str, e: io::Error) -> StartFailure {
    let has_slash = argv0.contains('/');
    let exists = has_slash && Path::new(argv0).exists();
    let program = crate::untrusted::shown_str(argv0);
    match e.raw_os_error().map(nix::errno::Errno::from_raw) {
        Some(nix::errno::Errno::ENOENT) if exists => {
            // The file is there, so the missing piece is its interpreter (#!).
            StartFailure::NotExecutable(format!("{program}: bad interpreter (the #! line names a missing program)"))
        }
        Some(nix::errno::Errno::ENOENT) if has_slash => StartFailure::NotFound(format!("{program}: no such file")),
        Some(nix::errno::Errno::ENOENT) => StartFailure::NotFound(format!("{program}: command not found in PATH")),
        Some(
            nix::errno::Errno::EACCES
            | nix::errno::Errno::EPERM
            | nix::errno::Errno::ENOEXEC
            | nix::errno::Errno::EISDIR
            | nix::errno::Errno::ETXTBSY,
        ) => StartFailure::NotExecutable(format!("{program}: cannot execute: {e}")),
        _ => StartFailure::Other(format!("{program}: cannot start: {e}")),
    }
}
