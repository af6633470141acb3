//! Checks through the VM's agent: version, workspace, heavy dirs, disk space
//! and latency; and the VM's network process, which stands between the
//! guest and everything outside it.

use std::time::Instant;

use hutch_proto::mountinfo::mount_points;

use super::Check;
use crate::exec::{self, Options, Outcome};
use crate::state::VmRecord;
use crate::target::Target;
use crate::transport::Client;
use crate::untrusted::text;

/// Exec round trips timed for the latency figure.
const LATENCY_RUNS: usize = 20;
/// Less free space than this in the guest is worth a warning.
const LOW_DISK_KIB: u64 = 1024 * 1024;

/// Every guest check for `target` (and its VM record, when it has one),
/// connected to as every command connects (`crate::connect`).
pub async fn checks(target: &Target) -> Vec<Check> {
    let mut client = match target.connect().await {
        Ok(client) => client,
        Err(e) => {
            let fix = e.hint().unwrap_or_else(|| "start the VM with `hutch up`".into());
            return vec![Check::fail("agent", e.to_string(), fix)];
        }
    };
    let mut out = Vec::new();
    let info = match client.describe().await {
        Ok(info) => info,
        Err(e) => return vec![Check::fail("agent", e.to_string(), "restart the VM: `hutch reset`")],
    };
    let ours = env!("CARGO_PKG_VERSION");
    let (version, os, arch) = (text::shown(&info.version), text::shown(&info.os), text::shown(&info.arch));
    out.push(if info.version == ours && info.protocol == hutch_proto::PROTOCOL {
        Check::ok("agent", format!("{version} on {os}/{arch}, protocol {}", info.protocol))
    } else {
        Check::warn(
            "agent",
            format!("agent {version} (protocol {}), hutch {ours} (protocol {})", info.protocol, hutch_proto::PROTOCOL),
            "rebuild the guest image (`cargo xtask image`) and `hutch reset` the VM",
        )
    });
    if let Some(record) = target.record()
        && info.os == "linux"
    {
        out.extend(mounts(&mut client, record).await);
    }
    out.push(disk(&mut client).await);
    out.push(latency(&mut client).await);
    if let Target::Vm { state, record } = target {
        out.extend(network(&state.vm_dir(&record.name), &record.name).await);
    }
    out
}

/// Whether the VM's network is what its last `up` asked for, and the
/// policy it serves now (with the changes `hutch allow`/`deny` made).
async fn network(vm_dir: &std::path::Path, name: &crate::state::VmName) -> Vec<Check> {
    let status = crate::net::daemon::status(vm_dir);
    let fix = format!("`hutch up --name {name}` starts it again; its log is {}", status.log.display());
    let (started, pid) = match (status.policy, status.pid) {
        (None, _) => return vec![Check::ok("network", "none: the guest has no way out")],
        (Some(_), None) => return vec![Check::fail("network", "the VM's network process is not running: the guest has no way out", fix)],
        (Some(policy), Some(pid)) => (policy, pid),
    };
    let live = crate::net::control::call(&crate::net::net_dir(vm_dir), &crate::net::control::Request::Status).await;
    let (policy, routes, pending) = match live {
        Ok(crate::net::control::Reply::Status { policy, routes, pending }) => (policy, routes, pending.len()),
        _ => (started, Vec::new(), 0),
    };
    let live_rules = policy.allow.iter().chain(&policy.deny).filter(|r| r.source.starts_with("hutch ")).count();
    let mut line = format!(
        "mode {}, {} allow rules, {} secrets, guest proxy 127.0.0.1:{}; `hutch net` pid {pid}",
        policy.mode.as_str(),
        policy.allow.len(),
        policy.secrets.len(),
        policy.guest_port
    );
    if live_rules > 0 {
        line.push_str(&format!("; {live_rules} rules changed while running (hutch allow/deny)"));
    }
    if pending > 0 {
        line.push_str(&format!("; {pending} requests waiting for an answer"));
    }
    let mut checks = vec![Check::ok("network", line)];
    checks.extend(routes.iter().map(|r| Check::ok("route", r.describe())));
    checks
}

async fn mounts(client: &mut Client, record: &VmRecord) -> Vec<Check> {
    let Some(ws) = &record.workspace else { return Vec::new() };
    let Some((0, table)) = sh(client, "cat /proc/self/mountinfo", &[]).await else {
        return vec![Check::warn("workspace", "could not read the guest's mount table", "check the guest has /proc mounted")];
    };
    if record.ro.is_some() {
        // A --ro VM holds a copy, not a mount.
        return vec![match sh(client, r#"test -d "$1""#, &[&ws.display().to_string()]).await {
            Some((0, _)) => Check::ok("workspace", format!("--ro snapshot at {}", ws.display())),
            _ => Check::fail("workspace", format!("no --ro snapshot at {}", ws.display()), format!("`hutch sync --name {}`", record.name)),
        }];
    }
    let mounted = mount_points(&table);
    let refresh = format!("`hutch down {0}` then `hutch up --name {0}` sets it up again", record.name);
    let mut out = vec![if mounted.contains(ws) {
        Check::ok("workspace", format!("mounted at {}", ws.display()))
    } else {
        Check::fail("workspace", format!("not mounted at {} in the guest", ws.display()), refresh.clone())
    }];
    // Only the ones the project has: hutch creates no others.
    let used: Vec<&str> = record.heavy_dirs.iter().filter(|h| ws.join(h).exists()).map(String::as_str).collect();
    let missing: Vec<&str> = used.iter().filter(|h| !mounted.contains(&ws.join(h))).copied().collect();
    if missing.is_empty() {
        if !used.is_empty() {
            out.push(Check::ok("heavy dirs", format!("{} on VM-local disk", used.join(", "))));
        }
    } else {
        out.push(Check::warn("heavy dirs", format!("not on VM-local disk: {}", missing.join(", ")), refresh));
    }
    out
}

async fn disk(client: &mut Client) -> Check {
    // statfs of VM-local storage (busybox df cannot see an initramfs root).
    let script = r#"d=/var/lib/hutch/local; [ -d "$d" ] || d=/; stat -f -c "%a %S" "$d""#;
    let Some((0, text)) = sh(client, script, &[]).await else {
        return Check::warn("disk", "could not measure free space in the guest", "check the guest has stat");
    };
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let free_kib = match (fields.next().flatten(), fields.next().flatten()) {
        (Some(blocks), Some(size)) => Some(blocks.saturating_mul(size) / 1024),
        _ => None,
    };
    match free_kib {
        Some(kib) if kib < LOW_DISK_KIB => {
            Check::warn("disk", format!("{} MiB free in the guest", kib / 1024), "free space, or give the VM a bigger disk")
        }
        Some(kib) => Check::ok("disk", format!("{} MiB free in the guest", kib / 1024)),
        None => Check::warn("disk", format!("unexpected stat output: {}", text::shown(&text)), "check the guest's stat"),
    }
}

async fn latency(client: &mut Client) -> Check {
    let mut samples = Vec::with_capacity(LATENCY_RUNS);
    for _ in 0..LATENCY_RUNS {
        let begin = Instant::now();
        if sh(client, "true", &[]).await.is_none_or(|(code, _)| code != 0) {
            return Check::fail("latency", "`true` failed in the guest", "see `hutch exec -- true`");
        }
        samples.push(begin.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Check::ok(
        "latency",
        format!(
            "exec true: median {:.2} ms over {LATENCY_RUNS} (min {:.2}, max {:.2})",
            samples[LATENCY_RUNS / 2],
            samples[0],
            samples[LATENCY_RUNS - 1]
        ),
    )
}

/// Runs `sh -c script args…` in the guest; its exit code and stdout. A
/// check, not a user's command: it has the call deadline.
async fn sh(client: &mut Client, script: &str, args: &[&str]) -> Option<(u8, String)> {
    let mut argv = vec!["sh".to_owned(), "-c".to_owned(), script.to_owned(), "sh".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let options =
        Options { argv, env: Default::default(), cwd: String::new(), tty: false, timeout: None, capture: true, no_stdin: true, ask: None };
    let deadline = client.deadline();
    let finished = deadline.within("a check's command", exec::run(client, &options)).await.ok()?.ok()?;
    let code = finished.outcome.exit_code();
    if matches!(finished.outcome, Outcome::StartFailed(_)) {
        return None;
    }
    let stdout = finished.captured.unwrap_or_default().stdout;
    Some((code, String::from_utf8_lossy(&stdout).into_owned()))
}
