//! The Lima configuration hutch gives each VM: CPUs, memory, the disk's
//! size when `--disk` asks for one, the workspace mounted at the host's path
//! (over virtio-fs where the VM type has it), and the agent's socket
//! forwarded to the host.
//!
//! For `limactl create` it is a template file (YAML; `base:` inherits the
//! image and everything else from the template the user names). For
//! `limactl clone` the same settings are one `--set` yq expression.
//! Strings are written as JSON literals, which both YAML and yq read, so any
//! path is quoted correctly.

use std::path::Path;

use crate::backend::VmSpec;
use crate::backend::disk_size::lima_size;

/// Where hutch-agent listens in Lima guests (the systemd unit from
/// `cargo xtask dist` starts it there).
pub const GUEST_SOCKET: &str = "/run/hutch/agent.sock";

/// Where Lima forwards [`GUEST_SOCKET`] on the host; Lima expands `{{.Dir}}`
/// to the instance's folder.
pub const HOST_SOCKET: &str = "{{.Dir}}/sock/hutch.sock";

/// The mount type hutch asks Lima for on this host: virtio-fs on macOS,
/// where Lima's default VM type is vz (Virtualization.framework) and vz has
/// it; 9p elsewhere (QEMU, the only VM type on Linux hosts, where Lima's
/// virtio-fs would need virtiofsd set up for Lima). A base template that
/// forces `vmType: qemu` on macOS makes Lima refuse virtio-fs: use a vz one.
pub const MOUNT_TYPE: &str = mount_type(cfg!(target_os = "macos"));

const fn mount_type(macos: bool) -> &'static str {
    if macos { "virtiofs" } else { "9p" }
}

/// The template for `limactl create`, inheriting from `base`.
pub fn template(spec: &VmSpec, base: &str) -> String {
    let mut yaml = format!("# Written by hutch for VM {}.\n", spec.name);
    yaml += &format!("base: {}\n", quote(base));
    yaml += &format!("cpus: {}\n", spec.cpus);
    yaml += &format!("memory: {}\n", quote(&memory(spec)));
    if let Some(bytes) = spec.disk_bytes {
        yaml += &format!("disk: {}\n", quote(&lima_size(bytes)));
    }
    if let Some(ws) = spec.shared_workspace() {
        yaml += &format!("mountType: {}\n", quote(MOUNT_TYPE));
        yaml += &format!("mounts:\n- {}\n", mount(ws));
    }
    yaml += &format!("portForwards:\n- {}\n", forward());
    yaml
}

/// The same settings as a yq expression for `limactl clone --set`.
pub fn set_expression(spec: &VmSpec) -> String {
    let mounts = spec.shared_workspace().map(mount).unwrap_or_default();
    let mount_type = if mounts.is_empty() { String::new() } else { format!(" | .mountType = {}", quote(MOUNT_TYPE)) };
    let disk = spec.disk_bytes.map(|bytes| format!(" | .disk = {}", quote(&lima_size(bytes)))).unwrap_or_default();
    format!(
        ".cpus = {} | .memory = {}{disk}{mount_type} | .mounts = [{mounts}] | .portForwards = [{}]",
        spec.cpus,
        quote(&memory(spec)),
        forward()
    )
}

fn memory(spec: &VmSpec) -> String {
    format!("{}MiB", spec.memory_mib)
}

fn mount(workspace: &Path) -> String {
    let path = quote(&workspace.display().to_string());
    format!("{{\"location\": {path}, \"mountPoint\": {path}, \"writable\": true}}")
}

fn forward() -> String {
    format!("{{\"guestSocket\": {}, \"hostSocket\": {}}}", quote(GUEST_SOCKET), quote(HOST_SOCKET))
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::VmName;

    fn spec() -> VmSpec {
        VmSpec {
            name: VmName::new("web").unwrap(),
            image: None,
            cpus: 4,
            memory_mib: 2048,
            disk_bytes: None,
            workspace: Some("/Users/me/my \"web\"".into()),
            ephemeral: false,
            heavy_dirs: Vec::new(),
            ro: None,
            unguarded_git: false,
            sync: false,
        }
    }

    #[test]
    fn template_and_expression_carry_the_same_settings() {
        let yaml = template(&spec(), "template://default");
        let expected = "# Written by hutch for VM web.\nbase: \"template://default\"\ncpus: 4\nmemory: \"2048MiB\"\nmountType: \"MOUNT_TYPE\"\n\
             mounts:\n- {\"location\": \"/Users/me/my \\\"web\\\"\", \"mountPoint\": \"/Users/me/my \\\"web\\\"\", \"writable\": true}\n\
             portForwards:\n- {\"guestSocket\": \"/run/hutch/agent.sock\", \"hostSocket\": \"{{.Dir}}/sock/hutch.sock\"}\n";
        assert_eq!(yaml, expected.replace("MOUNT_TYPE", MOUNT_TYPE));
        assert!(set_expression(&spec()).contains(&format!(" | .mountType = \"{MOUNT_TYPE}\" | .mounts = [{{")));
        let expr = set_expression(&VmSpec { workspace: None, ..spec() });
        assert_eq!(
            expr,
            ".cpus = 4 | .memory = \"2048MiB\" | .mounts = [] | .portForwards = [{\"guestSocket\": \"/run/hutch/agent.sock\", \"hostSocket\": \"{{.Dir}}/sock/hutch.sock\"}]"
        );
    }

    #[test]
    fn a_disk_size_goes_into_both() {
        let sized = VmSpec { disk_bytes: Some(40 << 30), ..spec() };
        assert!(template(&sized, "template://default").contains("\nmemory: \"2048MiB\"\ndisk: \"40GiB\"\n"), "{}", template(&sized, "x"));
        assert!(
            set_expression(&sized).starts_with(".cpus = 4 | .memory = \"2048MiB\" | .disk = \"40GiB\" | "),
            "{}",
            set_expression(&sized)
        );
        assert!(!template(&spec(), "x").contains("disk:"));
    }

    #[test]
    fn virtiofs_on_macos_9p_elsewhere() {
        assert_eq!(mount_type(true), "virtiofs");
        assert_eq!(mount_type(false), "9p");
    }
}
