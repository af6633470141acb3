//! `hutch ls [--json]`: every VM hutch knows, with its state.

use serde_json::json;

use crate::backend::{self, VmState};
use crate::cli::LsArgs;
use crate::error::Error;
use crate::state::{StateDir, VmRecord, now_unix};

/// Runs `hutch ls`; returns the exit code.
pub async fn run(args: LsArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let mut rows = Vec::new();
    for (name, record) in state.list()? {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                eprintln!("hutch: skipping {name}: {e}");
                continue;
            }
        };
        let vm_state = match backend::for_kind(record.kind(), &state) {
            Ok(backend) => match backend.state(&record, &state.vm_dir(&name)) {
                // A warm pool's VM: booting, or ready for a `run --rm`.
                Ok(VmState::Running) if record.pool.is_some() => record.pool.as_ref().map_or("running", |p| p.state.as_str()),
                Ok(vm_state) => vm_state.as_str(),
                Err(e) => {
                    eprintln!("hutch: cannot tell the state of {name}: {e}");
                    "unknown"
                }
            },
            Err(_) => "unknown",
        };
        rows.push((record, vm_state));
    }
    if args.json {
        let list: Vec<_> = rows.iter().map(|(r, s)| row_json(r, s)).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    println!("{:<24} {:<8} {:<9} {:<8} {:<44} WORKSPACE", "NAME", "BACKEND", "STATE", "UPTIME", "ADDRESS");
    for (record, vm_state) in &rows {
        let workspace = record.workspace.as_ref().map_or_else(|| "-".to_owned(), |w| w.display().to_string());
        let uptime = uptime(record, vm_state).map_or_else(|| "-".to_owned(), human);
        println!("{:<24} {:<8} {:<9} {:<8} {:<44} {workspace}", record.name, record.kind().as_str(), vm_state, uptime, record.addr_text());
    }
    Ok(0)
}

fn row_json(record: &VmRecord, vm_state: &str) -> serde_json::Value {
    json!({
        "name": record.name,
        "backend": record.kind().as_str(),
        "state": vm_state,
        "address": record.addr_text(),
        "workspace": record.workspace,
        "uptime_s": uptime(record, vm_state),
        "ephemeral": record.ephemeral,
        "pool": record.pool.as_ref().map(|p| json!({ "project": p.project, "state": p.state.as_str() })),
        "cpus": record.cpus,
        "memory_mib": record.memory_mib,
    })
}

fn uptime(record: &VmRecord, vm_state: &str) -> Option<u64> {
    // Ready and warming pool VMs run too.
    matches!(vm_state, "running" | "ready" | "warming").then(|| record.started_unix.map(|t| now_unix().saturating_sub(t))).flatten()
}

fn human(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{:02}h", secs / 86400, (secs % 86400) / 3600),
    }
}
