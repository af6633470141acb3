//! Where a synced copy's upkeep runs: the `Watch` call's work (reading the
//! copy's change events, comparing, reading changed files) on a thread of
//! its own, with its own single-threaded runtime, at a lower CPU priority
//! than the guest's commands.
//!
//! Why: guest VMs often have one vCPU, and under emulation every
//! instruction counts. A command writing many files makes the watch wake
//! for its events and send batches while it runs; at the same priority the
//! two split the CPU, and writing 500 files took 5–7× as long on the synced
//! copy as on a plain one (minimal image, TCG). At nice [`NICE`] the watch
//! gets about 1.4 % of a CPU that a command wants too (kernel weights 15
//! against 1024), and most of its work waits until the command is done: the
//! same writes took 1.2× (nice 10, a tenth of the CPU: 1.5–1.7×). It never
//! starves: a guest kept busy still sends its changes, slowly. An idle
//! guest (between commands, and when `hutch exec` flushes after one) runs
//! it at once. SCHED_IDLE was not taken: a guest busy forever (a spinning
//! dev server) would leave it 0.3 %, and each flush waiting on it.
//!
//! The gRPC encoding of what it sends stays on the agent's main runtime.

use std::future::Future;

/// The nice value of the upkeep's threads, the lowest there is (the
/// blocking threads its runtime starts inherit it).
pub const NICE: i32 = 19;

/// Runs `work` to its end on a new thread at nice [`NICE`]; on the caller's
/// runtime, at the agent's own priority, if no thread or runtime can be made.
pub fn spawn<F>(name: &str, work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!("{name}: no runtime of its own ({e}); it runs at the agent's priority");
            tokio::spawn(work);
            return;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel::<F>();
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        lower_priority();
        if let Ok(work) = rx.recv() {
            runtime.block_on(work);
        }
    });
    match thread {
        Ok(_) => {
            // The thread only waits for it: the send cannot fail.
            let _ = tx.send(work);
        }
        Err(e) => {
            tracing::warn!("{name}: no thread of its own ({e}); it runs at the agent's priority");
            tokio::spawn(work);
        }
    }
}

/// Lowers the calling thread's priority (Linux keeps a nice value per
/// thread); elsewhere nothing, since it would lower the whole agent.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = nix::unistd::gettid().as_raw();
        // SAFETY: setpriority(2) takes no pointers; `tid` is this thread's id.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) };
        if rc != 0 {
            tracing::warn!("lowering the sync upkeep's priority failed: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_work_runs_on_a_thread_at_the_lower_priority_and_its_blocking_threads_inherit_it() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.block_on(async {
            super::spawn("test-upkeep", async move {
                let own = nice();
                let blocking = tokio::task::spawn_blocking(nice).await.unwrap();
                let _ = tx.send((own, blocking));
            });
        });
        let (own, blocking) = rx.recv().unwrap();
        let ours = nice();
        assert_eq!(own, (ours + super::NICE).min(19));
        assert_eq!(blocking, own);
    }

    /// The calling thread's nice value.
    #[cfg(target_os = "linux")]
    fn nice() -> i32 {
        let tid = nix::unistd::gettid().as_raw();
        // SAFETY: getpriority(2) takes no pointers.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
    }
}
