//! `hutch fork [NAME] [--count N] [--name-prefix P]`: new VMs whose disks
//! start as VM NAME's is now, for best-of-N runs from one prepared state.
//!
//! The parent's disk is flushed (a running guest's `sync`), then frozen and
//! shared copy-on-write (`Backend::fork`; QEMU's disk layers); the parent
//! goes on at once. Each child then boots its own kernel from that disk: it
//! is a machine of its own (machine id, kernel RNG), with its own network
//! process serving the parent's policy, its own secret placeholders and
//! audit log. What a child writes is its own; a `--ro` child's changes come
//! back with `hutch diff --name CHILD`, a shared one's land in the project
//! it shares, as any VM's do.
//!
//! The children's RAM is their own, not a copy of the parent's: see the
//! README ("Warm starts and forks") for why a RAM copy-on-write fork is not
//! possible with the vhost-user devices these VMs need.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::backend::{self, VmSpec, VmState};
use crate::cli::ForkArgs;
use crate::connect;
use crate::error::Error;
use crate::exec::{self, Options};
use crate::fork::ForkError;
use crate::lifecycle;
use crate::state::{StateDir, VmLock, VmName, VmRecord};
use crate::target::{TargetError, vm_name};

/// How long the guest may take to write its disk out before the copy.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `hutch fork`; returns the exit code.
pub async fn run(args: ForkArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let parent = vm_name(&state, args.name.name())?;
    let mut record = state.load(&parent)?;
    if record.pool.is_some() {
        return Err(TargetError::InPool(parent).into());
    }
    let backend = backend::for_kind(record.kind(), &state)?;
    let prefix = args.name_prefix.unwrap_or_else(|| parent.to_string());
    let names = child_names(&state, &prefix, args.count)?;
    let dir = state.vm_dir(&parent);
    let begin = Instant::now();

    let parent_lock = VmLock::acquire(&dir)?;
    if backend.state(&record, &dir)? == VmState::Running {
        flush(&state, &record).await?;
    }
    let mut children = Vec::new();
    for name in names {
        let child_dir = state.create_vm_dir(&name)?;
        let lock = VmLock::acquire(&child_dir)?;
        children.push((VmSpec { ephemeral: false, ..VmSpec::like(&record, name) }, child_dir, lock));
    }
    let made: Vec<(VmSpec, PathBuf)> = children.iter().map(|(spec, dir, _)| (spec.clone(), dir.clone())).collect();
    let forked = backend.fork(&mut record, &dir, &made);
    // Saved either way: once frozen, the parent's disk goes on in a new layer.
    record.save(&dir)?;
    drop(parent_lock);
    let records = match forked {
        Ok(records) => records,
        Err(e) => {
            for (spec, _, _) in &children {
                let _ = state.remove_vm_dir(&spec.name);
            }
            return Err(e.into());
        }
    };
    for (child, (_, child_dir, _)) in records.iter().zip(&children) {
        child.save(child_dir)?;
    }

    // Every child boots at once (each is a fresh boot of its own kernel).
    let boots = children.iter().map(|(spec, _, _)| async {
        lifecycle::ensure_running(&state, backend.as_ref(), spec).await?;
        crate::net::daemon::inherit(&state, &parent, &spec.name)?;
        Ok::<_, Error>(())
    });
    let results = futures_util::future::join_all(boots).await;
    let mut failed = None;
    for ((spec, _, _), result) in children.iter().zip(results) {
        match result {
            Ok(()) => println!("{}", spec.name),
            Err(e) => {
                eprintln!("hutch: the fork {} did not start: {e}", spec.name);
                if let Ok(child) = state.load(&spec.name) {
                    let _ = lifecycle::destroy(&state, backend.as_ref(), &child);
                }
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => {
            eprintln!(
                "hutch: {} fork{} of {parent} up in {:.1} s",
                children.len(),
                if children.len() == 1 { "" } else { "s" },
                begin.elapsed().as_secs_f64()
            );
            Ok(0)
        }
    }
}

/// `count` names `PREFIX-N` that no VM has, counting up from 1.
fn child_names(state: &StateDir, prefix: &str, count: u32) -> Result<Vec<VmName>, Error> {
    let mut names = Vec::new();
    for n in 1.. {
        if names.len() == count as usize {
            break;
        }
        let name = VmName::new(&format!("{prefix}-{n}")).map_err(|_| ForkError::BadPrefix { prefix: prefix.to_owned() })?;
        if !state.vm_dir(&name).exists() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Has the running parent's guest write what it has cached to its disk, so
/// the children start from what its programs wrote (its file system's
/// journal makes whatever is written in the instant after consistent too).
async fn flush(state: &StateDir, record: &VmRecord) -> Result<(), Error> {
    let options = Options {
        argv: vec!["sync".into()],
        env: Default::default(),
        cwd: String::new(),
        tty: false,
        timeout: Some(FLUSH_TIMEOUT),
        capture: true,
        no_stdin: true,
        ask: None,
    };
    let mut client = connect::connect(state, record).await?;
    let finished = exec::run(&mut client, &options).await?;
    match finished.outcome.exit_code() {
        0 => Ok(()),
        code => Err(ForkError::Flush { name: record.name.clone(), why: format!("exit code {code}") }.into()),
    }
}
