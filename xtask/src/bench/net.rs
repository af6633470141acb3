//! Network figures: what hutch's egress proxy costs.
//!
//! - First-byte latency of an HTTPS request through the proxy, beside the
//!   same request straight to the server: curl's `time_starttransfer`, with
//!   the VM's network process serving a local agent (so the "guest" program
//!   runs on this machine and the figure is hutch's own cost, not a TCG
//!   guest's), for a tunnelled host and for an intercepted one (a host with
//!   a secret: TLS terminated and re-originated).
//! - A download from a loopback HTTP server into a QEMU guest through the
//!   proxy, beside the same download over QEMU user-mode networking (slirp)
//!   in the same VM: the bench gives the guest a slirp NIC of its own
//!   (through a `HUTCH_QEMU` wrapper; hutch's VMs never have one) and times
//!   busybox wget both ways, in turn.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use hutch::config::network::{NetworkConfig, Rule, SecretConfig};
use hutch::net::policy::{POLICY_FILE, PolicyFile};
use hutch::state::{BackendState, StateDir, VmName};
use hutch_tests::web::WebServer;

use super::exec::run_ok;
use super::stats::{Contender, Stats, throughput_gbps, time_interleaved};
use super::table::{Goal, Table, Unit};
use super::{Plan, Setup};
use crate::local_agent::LocalAgent;
use crate::workspace::{Result, target_dir};

/// The secret of the intercepted host (a dummy: only the interception is timed).
const SECRET_VAR: &str = "HUTCH_BENCH_SECRET";

/// Both network sections.
pub fn figures(table: &mut Table, plan: &Plan, setup: &Setup, agent_bin: &Path) -> Result<()> {
    first_byte(table, plan, setup, agent_bin)?;
    download(table, plan, setup)
}

/// A `hutch net` serving a local agent, stopped when dropped.
struct NetProcess {
    child: Child,
    _state: tempfile::TempDir,
    etc: tempfile::TempDir,
    guest_port: u16,
    _agent: LocalAgent,
}

impl Drop for NetProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Starts a local agent and a network process for it, whose policy allows
/// `tunnelled` and `intercepted` (which has a secret), trusting `ca`.
fn net_process(setup: &Setup, agent_bin: &Path, tunnelled: &str, intercepted: &str, ca: &str) -> Result<NetProcess> {
    let etc = tempfile::tempdir()?;
    let agent = LocalAgent::start_with(agent_bin, &["--etc-dir", etc.path().to_str().ok_or("path")?])?;
    let state = tempfile::Builder::new().prefix("hbnet").tempdir_in("/tmp")?;
    let dirs = StateDir::at(state.path());
    let name = VmName::new("benchnet")?;
    let dir = dirs.create_vm_dir(&name)?;
    let spec = hutch::backend::VmSpec {
        name: name.clone(),
        image: None,
        cpus: 1,
        memory_mib: 64,
        workspace: None,
        ephemeral: false,
        heavy_dirs: Vec::new(),
        ro: None,
        sync: false,
        disk_bytes: None,
        unguarded_git: false,
    };
    let addr: hutch_proto::addr::Addr = agent.addr.parse()?;
    spec.record("none".into(), Some(addr), BackendState::Lima(Default::default())).save(&dir)?;
    let guest_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut config = NetworkConfig::default();
    config.guest_port.value = guest_port;
    config.allow = [tunnelled, intercepted].iter().map(|p| Rule { pattern: (*p).to_owned(), source: "bench".into() }).collect();
    let secret = SecretConfig { from_env: SECRET_VAR.into(), hosts: vec![intercepted.to_owned()], source: "bench".into() };
    config.secrets = BTreeMap::from([("BENCH_KEY".to_owned(), secret)]);
    let policy = PolicyFile::new(&config, None);
    hutch::net::write_private(&hutch::net::net_dir(&dir).join(POLICY_FILE), serde_json::to_string(&policy)?.as_bytes())?;
    let mut bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.push_str(ca);
    let bundle_path = state.path().join("host-bundle.pem");
    std::fs::write(&bundle_path, bundle)?;
    let mut child = Command::new(&setup.hutch)
        .args(["net", "--name", "benchnet"])
        .env("HUTCH_STATE_DIR", state.path())
        .env("SSL_CERT_FILE", &bundle_path)
        .env(SECRET_VAR, "bench-secret-value")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        return Err(format!("hutch net did not start: {line:?}").into());
    }
    Ok(NetProcess { child, _state: state, etc, guest_port, _agent: agent })
}

/// curl's time to first byte, in ms, through `proxy` (or straight).
fn curl_first_byte(url: &str, proxy: Option<u16>, cacert: &Path) -> Result<f64> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "--fail", "-w", "%{time_starttransfer}", "--cacert"]).arg(cacert).arg(url);
    match proxy {
        Some(port) => cmd.args(["--proxy", &format!("http://127.0.0.1:{port}")]),
        None => cmd.args(["--noproxy", "*"]),
    };
    let out = cmd.env_remove("HTTPS_PROXY").env_remove("https_proxy").output()?;
    if !out.status.success() {
        return Err(format!("curl {url} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>()? * 1000.0)
}

fn first_byte(table: &mut Table, plan: &Plan, setup: &Setup, agent_bin: &Path) -> Result<()> {
    if Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_err() {
        table.note("first-byte rows skipped: no curl on this machine");
        return Ok(());
    }
    let plain = WebServer::https("127.0.0.2");
    let secret_host = WebServer::https("127.0.0.3");
    let ca = format!("{}{}", plain.ca_pem.clone().unwrap_or_default(), secret_host.ca_pem.clone().unwrap_or_default());
    let net = net_process(setup, agent_bin, &plain.addr.to_string(), &secret_host.addr.to_string(), &ca)?;
    let bundle = net.etc.path().join("hutch/ca-bundle.pem");
    let runs = plan.latency_runs / 2;
    let mut samples: [Vec<f64>; 3] = Default::default();
    let urls = [plain.url("/"), plain.url("/"), secret_host.url("/")];
    let proxies = [None, Some(net.guest_port), Some(net.guest_port)];
    for (url, proxy) in urls.iter().zip(proxies) {
        curl_first_byte(url, proxy, &bundle)?; // warm-up
    }
    // In turn, ten at a time, so all three see the same machine.
    while samples[0].len() < runs {
        for ((url, proxy), samples) in urls.iter().zip(proxies).zip(samples.iter_mut()) {
            for _ in 0..10.min(runs - samples.len()) {
                samples.push(curl_first_byte(url, proxy, &bundle)?);
            }
        }
    }
    let [direct, tunnelled, intercepted] = samples.map(|s| Stats::of(s).ok_or("no samples"));
    let (direct, tunnelled, intercepted) = (direct?, tunnelled?, intercepted?);
    table.figure("egress_first_byte", "HTTPS first byte through hutch's proxy (tunnelled), local agent", Unit::Ms, tunnelled.clone(), None);
    table.anchor("egress_first_byte.direct", "the same request straight to the server", &tunnelled, direct.clone(), Unit::Ms);
    table.figure(
        "egress_first_byte_intercepted",
        "the same through hutch, intercepted (a host with a secret)",
        Unit::Ms,
        intercepted.clone(),
        None,
    );
    table.anchor("egress_first_byte_intercepted.direct", "the same request straight to the server", &intercepted, direct.clone(), Unit::Ms);
    table.note(format!(
        "hutch adds {:.2} ms to an HTTPS request's first byte when tunnelling it, {:.2} ms when intercepting it (medians, curl time_starttransfer)",
        tunnelled.median - direct.median,
        intercepted.median - direct.median
    ));
    Ok(())
}

fn download(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    let image = target_dir().join("hutch-image").join("minimal");
    if !image.join("image.json").exists() {
        table.note("guest download rows skipped: no minimal image under target/hutch-image (run `cargo xtask image`)");
        return Ok(());
    }
    // The size, in --quick runs too: smaller downloads under TCG
    // measure the guest's start-up more than its network.
    let bytes: u64 = 256 << 20;
    // slirp reaches the host's 127.0.0.1 as 10.0.2.2; the proxy path asks for
    // 127.0.0.2 (a guest's NO_PROXY covers 127.0.0.1).
    let via_slirp = WebServer::http("127.0.0.1");
    let via_proxy = WebServer::http("127.0.0.2");
    let state = tempfile::Builder::new().prefix("hbdl").tempdir_in("/tmp")?;
    let ws = tempfile::tempdir()?;
    std::fs::write(ws.path().join("hutch.toml"), format!("[network]\nallow = [\"{}\"]\n", via_proxy.addr))?;
    let wrapper = state.path().join("qemu-with-slirp");
    let qemu = std::env::var("HUTCH_QEMU").unwrap_or_else(|_| format!("qemu-system-{}", std::env::consts::ARCH));
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec {qemu} \"$@\" -netdev user,id=bench0 -device virtio-net-pci,netdev=bench0\n"))?;
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let hutch = |args: &[&str]| {
        let mut cmd = Command::new(&setup.hutch);
        cmd.args(args)
            .current_dir(ws.path())
            .env("HUTCH_STATE_DIR", state.path())
            .env("HUTCH_IMAGE", &image)
            .env("HUTCH_QEMU", &wrapper)
            .env_remove("HUTCH_ADDR")
            .env_remove("HUTCH_NETWORK")
            .stdin(Stdio::null());
        cmd
    };
    let ws_arg = ws.path().to_str().ok_or("path")?;
    let up = hutch(&["up", "--name", "benchdl", "--workspace", ws_arg, "--cpus", "1", "--memory", "512"]).output()?;
    if !up.status.success() {
        table.note(format!("guest download rows skipped: `hutch up` failed: {}", String::from_utf8_lossy(&up.stderr).trim()));
        return Ok(());
    }
    let guest = |script: String| {
        let mut cmd = hutch(&["exec", "--name", "benchdl", "--", "sh", "-c", &script]);
        cmd.stdout(Stdio::null());
        cmd
    };
    let result = (|| -> Result<()> {
        run_ok(&mut guest("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2".into()))?;
        let slirp_url = format!("http://10.0.2.2:{}/bytes/{bytes}", via_slirp.addr.port());
        let proxy_url = via_proxy.url(&format!("/bytes/{bytes}"));
        let runs = plan.stream_runs;
        let mut contenders = vec![
            Contender::new(runs, || run_ok(&mut guest(format!("wget -q -O /dev/null {proxy_url}")))),
            Contender::new(runs, || run_ok(&mut guest(format!("wget -q -Y off -O /dev/null {slirp_url}")))),
        ];
        let millis = time_interleaved(&mut contenders, super::stats::Turns { block: 1, settle: false })?;
        drop(contenders);
        let proxy = Stats::of(throughput_gbps(bytes, &millis[0])).ok_or("no samples")?;
        let slirp = Stats::of(throughput_gbps(bytes, &millis[1])).ok_or("no samples")?;
        let goal = Goal { text: "≥ slirp".into(), met: proxy.median >= slirp.median };
        let label = format!("{} MiB from a loopback HTTP server into the QEMU guest through hutch's proxy (busybox wget)", bytes >> 20);
        table.figure("egress_download", &label, Unit::Gbps, proxy.clone(), Some(goal));
        table.anchor("egress_download.slirp", "the same over QEMU user-mode networking (slirp), same VM", &proxy, slirp, Unit::Gbps);
        Ok(())
    })();
    let _ = hutch(&["rm", "-f", "benchdl"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    result
}
