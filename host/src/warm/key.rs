//! A warm pool's key: everything that decides what a VM booted for
//! `hutch run --rm` contains, as one digest. A ready VM is taken only by a
//! run whose key is the same, so it is the VM that run would have booted:
//! the same image (the same files, not only the same name: a rebuilt image
//! is another key), CPUs, memory, disk, project folder, heavy dirs, `--ro`
//! mode, and what the backend adds (QEMU: how the project is shared, the
//! accelerator asked for, the host user's ids given to the guest's user).
//!
//! Not in the key, because a run applies them itself when it takes a VM:
//! the network policy and secrets (its network process starts then, with
//! the run's environment), the runtime hook (run then), the command's
//! environment, and port forwards.

use serde_json::json;

use crate::backend::{Backend, VmSpec};

/// Ready VMs are taken only by a hutch of this version: what the host
/// expects of a prepared VM may change between versions.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The key of the VMs `backend` would boot for `spec`: SHA-256 of what
/// decides their contents, in hex.
pub fn of(backend: &dyn Backend, spec: &VmSpec) -> String {
    let inputs = json!({
        "hutch": VERSION,
        "backend": backend.kind().as_str(),
        "image": spec.image,
        "backend_inputs": backend.pool_inputs(spec),
        "cpus": spec.cpus,
        "memory_mib": spec.memory_mib,
        "disk_bytes": spec.disk_bytes,
        "workspace": spec.workspace,
        "heavy_dirs": spec.heavy_dirs,
        "ro": spec.ro,
        "sync": spec.sync,
        "unguarded_git": spec.unguarded_git,
    });
    let digest = ring::digest::digest(&ring::digest::SHA256, inputs.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::{FakeBackend, spec};
    use crate::state::RoMode;

    #[test]
    fn every_setting_that_shapes_the_vm_changes_the_key_and_the_name_does_not() {
        let fake = FakeBackend::new([]);
        let base = VmSpec { workspace: Some("/home/me/app".into()), heavy_dirs: vec!["node_modules".into()], ..spec("a", None) };
        let key = of(&fake, &base);
        assert_eq!(key.len(), 64);
        assert_eq!(key, of(&fake, &VmSpec { name: crate::state::VmName::new("other").unwrap(), ..base.clone() }));
        let changed = [
            VmSpec { cpus: 4, ..base.clone() },
            VmSpec { memory_mib: 2048, ..base.clone() },
            VmSpec { disk_bytes: Some(40 << 30), ..base.clone() },
            VmSpec { workspace: Some("/home/me/other".into()), ..base.clone() },
            VmSpec { workspace: None, ..base.clone() },
            VmSpec { heavy_dirs: Vec::new(), ..base.clone() },
            VmSpec { ro: Some(RoMode::default()), ..base.clone() },
            VmSpec { image: Some("minimal".into()), ..base.clone() },
        ];
        for spec in changed {
            assert_ne!(of(&fake, &spec), key, "{spec:?}");
        }
    }
}
