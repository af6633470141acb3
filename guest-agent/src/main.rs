//! hutch-agent: the daemon inside the guest that runs commands for `hutch`.
//!
//! It serves the `hutch.v1.Agent` gRPC service, and Tart's guest-agent
//! service `Agent` (so `tart exec` works too), on every `--listen` address at
//! once (vsock in a VM, a Unix socket for local use and Lima, TCP with a token
//! as a last resort) and stops cleanly on SIGTERM/SIGINT, killing whatever it
//! still runs. It also receives `--ro` snapshots of host folders (`Sync`).
//! Started as PID 1 (the default Debian image), it is that guest's init
//! instead ([`init`]), which starts it again as the agent proper.

mod auth;
mod conn;
mod egress;
mod exec;
mod forward;
mod git;
mod info;
mod init;
mod limits;
mod listen;
mod malloc;
mod nofollow;
mod prepare;
mod service;
mod sync;
mod tart;
mod untrusted;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hutch_proto::addr::Addr;
use hutch_proto::tart::agent_server::AgentServer as TartServer;
use hutch_proto::v1::agent_server::AgentServer;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

use crate::auth::TokenCheck;
use crate::conn::accept::incoming;
use crate::exec::journal::Journal;
use crate::exec::registry::Groups;
use crate::exec::session_store::{Limits, Sessions};
use crate::listen::Listener;
use crate::service::AgentService;
use crate::tart::TartService;

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(name = "hutch-agent", version, about = "The hutch guest agent: runs commands for the hutch CLI over gRPC")]
struct Args {
    /// Where to listen (repeatable): unix:///PATH (mode 0600), vsock://any:PORT,
    /// tcp://HOST:PORT (needs --token-file). Default: vsock://any:8080.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<Addr>,

    /// File holding the bearer token that TCP clients must present.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// Where heavy dirs (node_modules, target, ...) live on VM-local disk.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/hutch/local")]
    local_dir: PathBuf,

    /// Where Tart's `--dir` shares are already visible, one folder per share
    /// (macOS guests: "/Volumes/My Shared Files"). Default: macOS's folder on
    /// macOS; on Linux the agent mounts Tart's virtiofs tag itself.
    #[arg(long, value_name = "DIR")]
    tart_shares: Option<PathBuf>,

    /// How heavy dirs are redirected: bind mounts (Linux default) or symlinks (macOS default).
    #[arg(long, value_enum)]
    heavy_strategy: Option<HeavyStrategyArg>,

    /// Folder for the agent's own state (what each `--ro` snapshot last received).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/hutch")]
    state_dir: PathBuf,

    /// Write `--ro` snapshots under this folder instead of at the host's path
    /// itself (for an agent running beside the host, as in tests).
    #[arg(long, value_name = "DIR")]
    snapshot_prefix: Option<PathBuf>,

    /// How a synced workspace's copy is watched: `inotify` (the Linux
    /// default) or `poll` (a walk every second: the macOS default, and for
    /// testing the portable way on Linux).
    #[arg(long, value_enum)]
    watch_method: Option<WatchMethodArg>,

    /// Where the egress proxy's guest-wide configuration goes: the trust
    /// bundle, environment, npm, git and pip files (a private folder for an
    /// agent running beside the host, as in tests).
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    etc_dir: PathBuf,

    /// Largest output buffer one session may ask for (`hutch exec --buffer`),
    /// in bytes (suffixes K, M, G: powers of 1024; default 64M). Sessions get 4M unless they ask.
    #[arg(long, value_name = "BYTES", default_value_t = limits::SESSION_BUFFER_MAX, value_parser = hutch_proto::size::parse_size)]
    session_buffer_max: u64,

    /// Output buffers of all kept sessions together, at most (default 1G; new
    /// sessions past it are refused, after dropping finished ones).
    #[arg(long, value_name = "BYTES", default_value_t = limits::SESSION_MEMORY, value_parser = hutch_proto::size::parse_size)]
    session_memory: u64,

    /// Sessions kept at once (running and finished).
    #[arg(long, value_name = "N", default_value_t = limits::MAX_SESSIONS)]
    max_sessions: usize,

    /// Run every command as this user of /etc/passwd (its uid, gid and home)
    /// instead of the agent's own; mounts and snapshots stay the agent's.
    #[arg(long, value_name = "NAME")]
    exec_user: Option<String>,

    /// More logging on stderr (-v debug, -vv trace). HUTCH_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// `--watch-method` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum WatchMethodArg {
    /// Kernel notifications per folder (Linux).
    Inotify,
    /// A walk of the copy every second.
    Poll,
}

/// `--heavy-strategy` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum HeavyStrategyArg {
    /// Bind-mount VM-local dirs over the paths (Linux).
    Bind,
    /// Replace the paths with symlinks into VM-local disk (macOS).
    Symlink,
}

/// HTTP/2 keepalive: a host that vanished without closing its connection
/// (VM host suspended, network cut) is noticed, and its execs killed, in about
/// `KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// HTTP/2 frames and flow-control windows sized for bulk streams (stdin,
/// `--ro` snapshot archives): the defaults (16 KiB frames, 64 KiB-1 MiB
/// windows) split every 256 KiB chunk into 16 frames and stall a fast sender
/// on window updates.
const MAX_FRAME_SIZE: u32 = hutch_proto::MAX_FRAME_SIZE;
const STREAM_WINDOW: u32 = hutch_proto::STREAM_WINDOW;
const CONNECTION_WINDOW: u32 = hutch_proto::CONNECTION_WINDOW;

fn main() -> ExitCode {
    if init::is_pid1() {
        return init::run();
    }
    malloc::tune();
    let args = Args::parse();
    init_logging(args.verbose);
    raise_fd_limit();
    // One event-loop thread: an exec is a handful of tasks (session, pumps,
    // stdin) passing messages, and on a multi-threaded runtime each hand-off
    // may wake another core (13 context switches per `exec true` instead of
    // 8, and 0.3 ms more CPU). Blocking work (tree walks, tar, prepare) runs
    // on `spawn_blocking` threads either way.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hutch-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hutch-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let token = args.token_file.as_deref().map(TokenCheck::from_file).transpose()?;
    let addrs = if args.listen.is_empty() {
        vec![Addr::Vsock { cid: hutch_proto::addr::VSOCK_CID_ANY, port: hutch_proto::DEFAULT_VSOCK_PORT }]
    } else {
        args.listen
    };
    // Bind everything before serving anything, so a bad address fails the start.
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in &addrs {
        listeners.push((addr.clone(), listen::bind(addr, token.is_some()).await?));
    }

    let groups = Groups::default();
    let strategy = match args.heavy_strategy {
        Some(HeavyStrategyArg::Bind) => prepare::Strategy::Bind,
        Some(HeavyStrategyArg::Symlink) => prepare::Strategy::Symlink,
        None => prepare::Strategy::native(),
    };
    let (journal, lost) = Journal::open(&args.state_dir);
    git::registry::load(&args.state_dir);
    let limits = Limits {
        max_buffer: usize::try_from(args.session_buffer_max).unwrap_or(usize::MAX),
        memory: args.session_memory,
        max_sessions: args.max_sessions,
        ..Limits::default()
    };
    let sessions = Sessions::new(limits, groups.clone(), journal, lost);

    let exec_user = args.exec_user.as_deref().map(exec::user::ExecUser::lookup).transpose()?;
    let owner = exec_user.as_ref().map(|u| (u.uid, u.gid));
    if let Some(user) = exec_user {
        tracing::info!("commands run as {} (uid {}, gid {})", user.name, user.uid, user.gid);
        exec::user::set(user);
    }
    let prepare = prepare::Config { local_root: args.local_dir, strategy, tart_shares: args.tart_shares, owner };
    let mut sync = sync::Config::new(args.state_dir, args.snapshot_prefix);
    match args.watch_method {
        Some(WatchMethodArg::Inotify) => sync.watch_method = hutch_proto::watch::Method::Inotify,
        Some(WatchMethodArg::Poll) => sync.watch_method = hutch_proto::watch::Method::Poll,
        None => {}
    }
    let egress = egress::listener::Config { etc: args.etc_dir, home: std::env::var_os("HOME").map(PathBuf::from) };
    let service = AgentService::new(groups.clone(), sessions.clone(), prepare, sync, egress);
    let tart = TartService::new(groups.clone(), sessions);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = JoinSet::new();
    let mut sockets = Vec::new();
    for (addr, listener) in listeners {
        tracing::info!("listening on {addr}");
        let stop = wait_for(stop_rx.clone());
        let builder = Server::builder()
            .max_frame_size(Some(MAX_FRAME_SIZE))
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .max_concurrent_streams(Some(limits::MAX_STREAMS_PER_CONNECTION))
            .http2_max_header_list_size(Some(limits::MAX_HEADER_LIST_BYTES as u32))
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
        let name = addr.to_string();
        match listener {
            Listener::Unix(l, path) => {
                sockets.push(path);
                let router = builder.clone().add_service(agent_server(&service)).add_service(tart_server(&tart));
                servers.spawn(router.serve_with_incoming_shutdown(incoming(l, name), stop));
            }
            Listener::Vsock(l) => {
                let router = builder.clone().add_service(agent_server(&service)).add_service(tart_server(&tart));
                servers.spawn(router.serve_with_incoming_shutdown(incoming(l, name), stop));
            }
            Listener::Tcp(l) => {
                let check = token.clone().ok_or("TCP listener without a token")?;
                let tart_check = check.clone();
                let svc = InterceptedService::new(agent_server(&service), move |req| check.check(req));
                let tart_svc = InterceptedService::new(tart_server(&tart), move |req| tart_check.check(req));
                let router = builder.clone().add_service(svc).add_service(tart_svc);
                servers.spawn(router.serve_with_incoming_shutdown(incoming(l, name), stop));
            }
        }
    }
    println_ready(&addrs);

    let reason = tokio::select! {
        signal = shutdown_signal() => signal?,
        Some(joined) = servers.join_next() => format!("a listener stopped: {joined:?}"),
    };
    tracing::info!("shutting down ({reason}); killing {} running exec(s)", groups.len());
    groups.kill_all();
    let _ = stop_tx.send(true);
    // Give in-flight calls a moment to report; then leave regardless.
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while servers.join_next().await.is_some() {} }).await;
    for path in sockets {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The hutch.v1 service with the agent's message size limit.
fn agent_server(service: &AgentService) -> AgentServer<AgentService> {
    AgentServer::new(service.clone()).max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
}

/// Tart's service with the agent's message size limit.
fn tart_server(tart: &TartService) -> TartServer<TartService> {
    TartServer::new(tart.clone()).max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
}

/// Announces readiness on stdout (one line), for scripts that start the agent
/// in the background and wait for it.
fn println_ready(addrs: &[Addr]) {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    println!("hutch-agent {} ready on {}", env!("CARGO_PKG_VERSION"), list.join(" "));
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn shutdown_signal() -> std::io::Result<String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM".to_owned(),
        _ = int.recv() => "SIGINT".to_owned(),
    })
}

/// Raises the soft limit on open descriptors to the hard one: service
/// managers often start daemons with a soft limit of 1024, and every
/// connection and exec (3 to 6 pipes and fds each) takes some. The
/// connection cap and the accept back-off (see `conn`) keep the agent
/// working when even the hard limit is reached.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!("keeping the descriptor limit at {soft}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("cannot read the descriptor limit: {e}"),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUTCH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: in a log file or a journal, escape codes
    // are noise (and make escaped untrusted text harder to read).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).with_ansi(ansi).init();
}
