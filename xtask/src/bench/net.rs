//! Network figures: what hutch's egress proxy costs.
//!
//! - First-byte latency of an HTTPS request through the proxy, beside the
//!   same request straight to the server: curl's `time_starttransfer`, with
//!   the VM's network process serving a local agent (so the "guest" program
//!   runs on this machine and the figure is hutch's own cost, not a TCG
//!   guest's), for a tunnelled host and for an intercepted one (a host with
//!   a secret: TLS terminated and re-originated).
//! - Downloads from loopback servers into a QEMU guest through the proxy
//!   over the link (plain HTTP; HTTPS tunnelled with CONNECT; HTTPS
//!   intercepted, a host with a secret), plain HTTP over the agent's vsock
//!   pipe too, beside the same downloads over QEMU user-mode networking
//!   (slirp) in the same VM: the bench gives the guest a slirp NIC of its
//!   own (through a `HUTCH_QEMU` wrapper; hutch's VMs never have one, only
//!   the link) and times curl (the Debian image's) every way, in turn.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use hutch::config::network::{NetworkConfig, Rule, SecretConfig};
use hutch::net::policy::{POLICY_FILE, PolicyFile};
use hutch::state::{BackendState, StateDir, VmName};
use hutch_tests::Agent;
use hutch_tests::web::WebServer;

use super::exec::run_ok;
use super::stats::{Contender, Stats, throughput_gbps, time_interleaved};
use super::table::{Goal, Table, Unit};
use super::{Plan, Setup};
use crate::workspace::{Result, target_dir};

/// The secret of the intercepted host (a dummy: only the interception is timed).
/// The MAC of the slirp NIC the bench adds, by which the guest finds it.
const SLIRP_MAC: &str = "52:54:00:be:00:01";
const SECRET_VAR: &str = "HUTCH_BENCH_SECRET";

/// Both network sections.
pub fn figures(table: &mut Table, plan: &Plan, setup: &Setup, agent_bin: &Path) -> Result<()> {
    // Each part on its own: one that fails leaves a note, not the other undone.
    if let Err(e) = first_byte(table, plan, setup, agent_bin) {
        table.note(format!("first-byte rows stopped: {e}"));
    }
    download(table, plan, setup)
}

/// A `hutch net` serving a local agent, stopped when dropped.
struct NetProcess {
    child: Child,
    _state: tempfile::TempDir,
    etc: tempfile::TempDir,
    guest_port: u16,
    _agent: Agent,
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
    let agent = Agent::local(agent_bin, &["--etc-dir", etc.path().to_str().ok_or("path")?])?;
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
    let secret = SecretConfig {
        from_env: Some(SECRET_VAR.into()),
        hosts: vec![intercepted.to_owned()],
        source: "bench".into(),
        ..SecretConfig::default()
    };
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
    cmd.args(["-sS", "-o", "/dev/null", "--fail", "-w", "%{time_starttransfer}", "--cacert"]).arg(cacert).arg(url);
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

/// One way of downloading into the guest, timed in turn with the others.
struct Way {
    key: &'static str,
    label: &'static str,
    /// The guest's command (curl).
    command: String,
}

fn download(table: &mut Table, plan: &Plan, setup: &Setup) -> Result<()> {
    // The Debian image: its curl makes HTTPS requests through a proxy with
    // CONNECT (busybox wget sends `GET https://…` to the proxy instead).
    let images = target_dir().join("hutch-image");
    let Some(image) = ["default", "e2e-default"].into_iter().map(|name| images.join(name)).find(|dir| dir.join("image.json").exists())
    else {
        table.note("guest download rows skipped: no Debian image under target/hutch-image (run `cargo xtask image`)");
        return Ok(());
    };
    // The size, in --quick runs too: smaller downloads under TCG
    // measure the guest's start-up more than its network.
    let bytes: u64 = 256 << 20;
    // slirp reaches the host's 127.0.0.1 as 10.0.2.2; the proxy path asks for
    // 127.0.0.2-4 (a guest's NO_PROXY covers 127.0.0.1). The intercepted
    // server's host has a secret, so hutch terminates its TLS.
    let via_slirp = WebServer::http("127.0.0.1");
    let via_slirp_tls = WebServer::https("127.0.0.1");
    let via_proxy = WebServer::http("127.0.0.2");
    let tunnelled = WebServer::https("127.0.0.3");
    let intercepted = WebServer::https("127.0.0.4");
    let state = tempfile::Builder::new().prefix("hbdl").tempdir_in("/tmp")?;
    let ws = tempfile::tempdir()?;
    let config = format!(
        "[network]\nallow = [\"{}\", \"{}\", \"{}\"]\n\n[secrets.BENCH_KEY]\nfrom_env = \"{SECRET_VAR}\"\nhosts = [\"{}\"]\n",
        via_proxy.addr,
        tunnelled.addr,
        intercepted.addr,
        intercepted.addr.ip()
    );
    std::fs::write(ws.path().join("hutch.toml"), config)?;
    // hutch verifies the intercepted server against the host's store: add its CA there.
    let mut bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.push_str(intercepted.ca_pem.as_deref().unwrap_or_default());
    let bundle_path = state.path().join("host-bundle.pem");
    std::fs::write(&bundle_path, bundle)?;
    let wrapper = state.path().join("qemu-with-slirp");
    let qemu = std::env::var("HUTCH_QEMU").unwrap_or_else(|_| format!("qemu-system-{}", std::env::consts::ARCH));
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {qemu} \"$@\" -netdev user,id=bench0 -device virtio-net-pci,netdev=bench0,mac={SLIRP_MAC}\n"),
    )?;
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let hutch = |args: &[&str]| {
        let mut cmd = Command::new(&setup.hutch);
        cmd.args(args)
            .current_dir(ws.path())
            .env("HUTCH_STATE_DIR", state.path())
            .env("HUTCH_IMAGE", &image)
            .env("HUTCH_QEMU", &wrapper)
            .env("SSL_CERT_FILE", &bundle_path)
            .env(SECRET_VAR, "bench-secret-value")
            .env_remove("HUTCH_ADDR")
            .env_remove("HUTCH_NETWORK")
            .stdin(Stdio::null());
        cmd
    };
    let ws_arg = ws.path().to_str().ok_or("path")?;
    let up = hutch(&["up", "--name", "benchdl", "--workspace", ws_arg, "--cpus", "1", "--memory", "1024"]).output()?;
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
        // The slirp NIC is the one with the bench's MAC (the other is hutch's link).
        let nic = format!("dev=$(grep -l {SLIRP_MAC} /sys/class/net/*/address | cut -d/ -f5)");
        let root = "S=; [ \"$(id -u)\" = 0 ] || S='sudo -n'";
        run_ok(&mut guest(format!(
            "{root}; {nic} && $S ip link set $dev up && $S ip addr add 10.0.2.15/24 dev $dev && $S ip route add default via 10.0.2.2"
        )))?;
        let path = format!("/bytes/{bytes}");
        // curl -k: the TLS rows time the same handshake and decryption on
        // every path, not a trust store.
        let curl = |url: String, proxy: bool| format!("curl -sS -k --fail -o /dev/null {}{url}", if proxy { "" } else { "--noproxy '*' " });
        let slirp_tls = format!("https://10.0.2.2:{}{path}", via_slirp_tls.addr.port());
        let ways = [
            Way { key: "egress_download", label: "through hutch's proxy, plain HTTP", command: curl(via_proxy.url(&path), true) },
            Way {
                key: "egress_download_pipe",
                label: "through hutch's proxy over the agent's vsock pipe (127.0.0.1), plain HTTP",
                command: format!("http_proxy=http://127.0.0.1:3128 {}", curl(via_proxy.url(&path), true)),
            },
            Way {
                key: "egress_download.slirp",
                label: "the same over QEMU user-mode networking (slirp), same VM",
                command: curl(format!("http://10.0.2.2:{}{path}", via_slirp.addr.port()), false),
            },
            Way {
                key: "egress_download_https",
                label: "through hutch's proxy, HTTPS tunnelled (CONNECT)",
                command: curl(tunnelled.url(&path), true),
            },
            Way {
                key: "egress_download_https_intercepted",
                label: "through hutch's proxy, HTTPS intercepted (a host with a secret: TLS terminated and re-originated)",
                command: curl(intercepted.url(&path), true),
            },
            Way { key: "egress_download_https.slirp", label: "HTTPS over slirp, same VM", command: curl(slirp_tls, false) },
        ];
        let runs = plan.stream_runs;
        let mut contenders: Vec<Contender> =
            ways.iter().map(|way| Contender::new(runs, || run_ok(&mut guest(way.command.clone())))).collect();
        let millis = time_interleaved(&mut contenders, super::stats::Turns { block: 1, settle: false })?;
        drop(contenders);
        let stats: Vec<Stats> =
            millis.iter().map(|m| Stats::of(throughput_gbps(bytes, m)).ok_or("no samples")).collect::<std::result::Result<_, _>>()?;
        let mib = bytes >> 20;
        let row = |table: &mut Table, i: usize, anchor: usize| {
            let met = stats[i].median >= 0.8 * stats[anchor].median;
            let label = format!("{mib} MiB from a loopback server into the QEMU guest {} (curl)", ways[i].label);
            table.figure(ways[i].key, &label, Unit::Gbps, stats[i].clone(), Some(Goal { text: "≥ 0.8× slirp".into(), met }));
            table.anchor(ways[anchor].key, ways[anchor].label, &stats[i], stats[anchor].clone(), Unit::Gbps);
        };
        row(table, 0, 2);
        row(table, 1, 2);
        row(table, 3, 5);
        row(table, 4, 5);
        Ok(())
    })();
    let _ = hutch(&["rm", "-f", "benchdl"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    result
}
