//! `hutch allow [--name NAME] [--save] [--once] HOST…` and `hutch deny
//! [--name NAME] [--save] HOST…`: change a running VM's network policy at
//! once, through its network process's control socket (no restart: open
//! connections to hosts that stay allowed go on; `deny` cuts the ones to
//! hosts it refuses). The change lasts while the VM runs; `--save` also
//! writes it into the project's `hutch.toml`, keeping the file's comments
//! and layout, and names the file and line. In `mode = "ask"` they answer
//! the requests waiting for the hosts they name (`--once`: let those
//! through without a rule).

use crate::cli::{AllowArgs, RuleArgs};
use crate::config::edit::{self, List, Saved};
use crate::error::Error;
use crate::net::control::{self, Change, ChangeKind, ChangeResult, ControlError, Reply, Request};
use crate::net::policy::PolicyFile;
use crate::net::{NetError, net_dir};
use crate::state::StateDir;
use crate::target::vm_name;
use crate::untrusted::text;

/// Runs `hutch allow`; returns the exit code.
pub async fn allow(args: AllowArgs) -> Result<u8, Error> {
    let kind = if args.once { ChangeKind::Once } else { ChangeKind::Allow };
    change(args.rule, kind).await
}

/// Runs `hutch deny`; returns the exit code.
pub async fn deny(args: RuleArgs) -> Result<u8, Error> {
    change(args, ChangeKind::Deny).await
}

async fn change(args: RuleArgs, kind: ChangeKind) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let name = vm_name(&state, args.name.as_ref())?;
    let record = state.load(&name)?;
    let net = net_dir(&state.vm_dir(&name));
    if !args.save && !crate::net::daemon::has_network(&state.vm_dir(&name)) {
        return Err(Error::Usage(format!(
            "VM {name} has no network (--network none): nothing to allow or deny; `hutch up --name {name} --network allow` gives it one"
        )));
    }
    let command = match kind {
        ChangeKind::Allow => "hutch allow",
        ChangeKind::Deny => "hutch deny",
        ChangeKind::Once => "hutch allow --once",
    };
    let mut changes = Vec::new();
    let mut saves = Vec::new();
    for pattern in &args.hosts {
        let saved = if args.save {
            let file = save_file(&net, record.workspace.as_deref());
            let list = if kind == ChangeKind::Deny { List::Deny } else { List::Allow };
            Some(edit::save_rule(&file, list, pattern).map_err(NetError::from)?)
        } else {
            None
        };
        let source = saved.as_ref().map_or_else(|| command.to_owned(), Saved::source);
        changes.push(Change { kind, pattern: pattern.to_string(), source, saved: saved.as_ref().map(Saved::source) });
        saves.push(saved);
    }
    let request = Request::Change { changes, by: command.into() };
    let results = match control::call(&net, &request).await {
        Ok(Reply::Changed { results }) => results,
        Ok(other) => return Err(NetError::from(ControlError::Protocol(format!("{other:?}"))).into()),
        Err(ControlError::NotRunning { .. }) if args.save => {
            for saved in saves.iter().flatten() {
                println!("saved: {}  (VM {name} has no network running: the rule applies when it next starts)", saved.source());
            }
            return Ok(0);
        }
        Err(e) => return Err(NetError::from(e).into()),
    };
    for (result, saved) in results.iter().zip(&saves) {
        print_result(name.as_ref(), kind, result, saved.as_ref());
    }
    Ok(0)
}

/// The file `--save` writes: the project's `hutch.toml` (made in the
/// workspace if it has none), else the file refusals name.
fn save_file(net: &std::path::Path, workspace: Option<&std::path::Path>) -> std::path::PathBuf {
    if let Some(ws) = workspace {
        return crate::config::project_file(ws).unwrap_or_else(|| ws.join(crate::config::PROJECT_FILE));
    }
    match PolicyFile::load(net) {
        Ok(policy) => std::path::PathBuf::from(policy.advice_file),
        Err(_) => crate::config::user_file().unwrap_or_else(|| std::path::PathBuf::from(crate::config::PROJECT_FILE)),
    }
}

fn print_result(vm: &str, kind: ChangeKind, result: &ChangeResult, saved: Option<&Saved>) {
    let pattern = &result.pattern;
    match kind {
        ChangeKind::Once if result.answered.is_empty() => println!("{pattern}: no request was waiting for it in {vm}"),
        ChangeKind::Once => println!("{pattern}: let through once in {vm}: {}", text::shown(&result.answered.join(", "))),
        ChangeKind::Allow | ChangeKind::Deny => {
            let verb = if kind == ChangeKind::Allow { "allowed" } else { "denied" };
            let lasting = match saved {
                Some(saved) if saved.existed => format!("already in {}", saved.source()),
                Some(saved) => format!("saved to {}", saved.source()),
                None => "until the VM stops; --save keeps it in hutch.toml".into(),
            };
            println!("{pattern}: {verb} in {vm} ({lasting})");
            if let Some(rule) = &result.already {
                println!("  the configuration already says so: {rule}");
            }
            for rule in &result.undone {
                let what = if kind == ChangeKind::Allow { "no longer denied by" } else { "no longer allowed by" };
                println!("  {what} {rule}");
            }
            if let Some(saved) = saved.filter(|s| s.removed > 0) {
                let list = if kind == ChangeKind::Allow { "deny" } else { "allow" };
                println!("  removed from the {list} list of {}", saved.path.display());
            }
            if let Some(reason) = &result.still_denied {
                println!("  still refused: {reason} (deny rules win; `hutch allow` that rule's own pattern to lift it)");
            }
            if let Some(route) = &result.route {
                println!("  {route}");
            }
            if !result.answered.is_empty() {
                println!("  answered the waiting requests for {}", text::shown(&result.answered.join(", ")));
            }
            if result.cut > 0 {
                println!("  cut {} open connection{}", result.cut, if result.cut == 1 { "" } else { "s" });
            }
        }
    }
}
