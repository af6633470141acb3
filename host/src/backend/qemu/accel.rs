//! Choosing QEMU's accelerator: KVM when it really boots guests, TCG otherwise.
//!
//! `/dev/kvm` being present and openable is not enough: on some hosts (nested
//! virtualisation without the right support) a KVM guest hangs right after the
//! firmware hands over to the kernel. So the first KVM boot on a host is a
//! probe with a short timeout; if the agent does not answer in time, hutch
//! falls back to TCG and remembers the verdict in the state folder
//! (`qemu-kvm.json`; delete it to probe again). `HUTCH_QEMU_ACCEL=kvm|tcg`
//! skips the probe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a first KVM boot may take before hutch calls KVM broken here.
/// A KVM boot of the hutch image takes well under a second where it works.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

pub use crate::state::Accel;

/// The decision for one boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// What to run with.
    pub accel: Accel,
    /// This KVM boot is the probe: fall back to TCG if it times out.
    pub probing: bool,
    /// Why, in a sentence for the user.
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
struct Verdict {
    kvm_boots: bool,
    checked_unix: u64,
}

/// Where the verdict is kept.
pub fn verdict_path(state_root: &Path) -> PathBuf {
    state_root.join("qemu-kvm.json")
}

/// Decides the accelerator from `HUTCH_QEMU_ACCEL`, `/dev/kvm` and the cached verdict.
pub fn choose(state_root: &Path, preference: Option<&str>) -> Choice {
    match preference {
        Some("tcg") => return Choice { accel: Accel::Tcg, probing: false, reason: "HUTCH_QEMU_ACCEL=tcg".into() },
        Some("kvm") => return Choice { accel: Accel::Kvm, probing: false, reason: "HUTCH_QEMU_ACCEL=kvm".into() },
        _ => {}
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Choice { accel: Accel::Tcg, probing: false, reason: format!("KVM is unavailable (/dev/kvm: {e})") };
    }
    if let Some(why) = kvm_cannot_boot() {
        return Choice { accel: Accel::Tcg, probing: false, reason: why };
    }
    from_verdict(state_root)
}

/// KVM looks usable: follow the cached verdict, or probe if there is none.
fn from_verdict(state_root: &Path) -> Choice {
    let path = verdict_path(state_root);
    match std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Verdict>(&t).ok()) {
        Some(Verdict { kvm_boots: true, .. }) => Choice { accel: Accel::Kvm, probing: false, reason: "KVM".into() },
        Some(Verdict { kvm_boots: false, .. }) => Choice {
            accel: Accel::Tcg,
            probing: false,
            reason: format!("KVM did not boot a guest on this host before (remembered in {}; delete it to try again)", path.display()),
        },
        None => Choice { accel: Accel::Kvm, probing: true, reason: "probing KVM".into() },
    }
}

/// Reasons, visible without a probe, why KVM here would not boot a guest.
fn kvm_cannot_boot() -> Option<String> {
    // PVM (a paravirtual KVM for nested use without hardware support) opens
    // /dev/kvm but cannot run an unmodified guest kernel.
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Some("/dev/kvm is PVM (kvm_pvm), which does not boot unmodified guests".into());
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    (!has("vmx") && !has("svm")).then(|| "the CPU exposes no VT-x/AMD-V (no vmx/svm flag)".to_owned())
}

/// The host TSC rate in kHz from /proc/cpuinfo (`cpu MHz`), for `tsc_early_khz`.
pub fn host_tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?.split(':').nth(1)?.trim().parse().ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

/// Remembers whether KVM booted a guest.
pub fn remember(state_root: &Path, kvm_boots: bool) {
    let verdict = Verdict { kvm_boots, checked_unix: crate::state::now_unix() };
    if let Ok(text) = serde_json::to_string(&verdict) {
        let _ = std::fs::create_dir_all(state_root);
        let _ = std::fs::write(verdict_path(state_root), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_preference_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(choose(dir.path(), Some("tcg")).accel, Accel::Tcg);
        assert_eq!(choose(dir.path(), Some("kvm")).accel, Accel::Kvm);
    }

    #[test]
    fn the_first_kvm_boot_probes_and_the_verdict_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let first = from_verdict(dir.path());
        assert_eq!((first.accel, first.probing), (Accel::Kvm, true));
        remember(dir.path(), false);
        let after_failure = from_verdict(dir.path());
        assert_eq!((after_failure.accel, after_failure.probing), (Accel::Tcg, false));
        assert!(after_failure.reason.contains("did not boot"), "{}", after_failure.reason);
        remember(dir.path(), true);
        assert_eq!(from_verdict(dir.path()), Choice { accel: Accel::Kvm, probing: false, reason: "KVM".into() });
    }
}
