//! Whether this host lets a process that is not root make user namespaces:
//! virtiofsd's sandbox and the git guard's mount namespace both need them,
//! and `hutch doctor` says when they are turned off.

/// Why this process cannot make a user namespace, if it cannot: as a user
/// other than root it needs unprivileged user namespaces, which some
/// distributions turn off (Ubuntu 24.04 restricts them through AppArmor).
pub fn obstacle() -> Option<String> {
    if nix::unistd::geteuid().is_root() {
        return None;
    }
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled (user.max_user_namespaces = 0)".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)".into());
    }
    None
}
