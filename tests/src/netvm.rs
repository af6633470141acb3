//! A VM whose network is on, for the network tests that run on this
//! machine: the fake Lima backend whose "guest" is a real hutch-agent here,
//! `hutch up` starting the VM's real network process, real guest programs
//! run through `hutch exec`. The guest's loopback is this machine's, so test
//! servers listen on 127.0.0.2 and 127.0.0.3 (a guest's `NO_PROXY` covers
//! 127.0.0.1), and rules name them as a user names a private address.

use std::path::PathBuf;
use std::process::Output;

use crate::fakes::FakeVmm;
use crate::{code, stderr, stdout};

/// The host variable the tests' secrets come from, and its value.
pub const SECRET_VAR: &str = "HOST_TEST_KEY";
/// The real value behind [`SECRET_VAR`].
pub const SECRET: &str = "sk-hutch-test-real-value-0123456789";

/// The VM's name in every network test.
pub const NAME: &str = "net";

/// A Lima VM with `config` as its hutch.toml, the host trusting `extra_ca`
/// besides the system store, and [`SECRET_VAR`] set.
pub fn vm_with_network(config: &str, extra_ca: Option<&str>) -> FakeVmm {
    let mut fake = FakeVmm::lima();
    std::fs::write(fake.workspace().join("hutch.toml"), config).expect("write hutch.toml");
    let mut bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.push_str(extra_ca.unwrap_or_default());
    let bundle_path = fake.root.path().join("host-bundle.pem");
    std::fs::write(&bundle_path, bundle).expect("write the host bundle");
    fake.env.extend([
        ("HUTCH_NETWORK".to_owned(), "allow".to_owned()),
        (SECRET_VAR.to_owned(), SECRET.to_owned()),
        ("SSL_CERT_FILE".to_owned(), bundle_path.display().to_string()),
        ("HUTCH_MUX".to_owned(), "0".to_owned()),
    ]);
    fake
}

/// Asserts `out` succeeded; its stdout.
pub fn ok(out: &Output) -> String {
    assert_eq!(code(out), 0, "hutch failed:\n{}{}", stdout(out), stderr(out));
    stdout(out)
}

/// `hutch up` of VM [`NAME`] on the fake's workspace, from the workspace.
pub fn up(fake: &FakeVmm, extra: &[&str]) -> String {
    let ws = fake.workspace();
    let mut args = vec!["up", "--name", NAME, "--image", "base", "--workspace", ws.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    ok(&fake.hutch().current_dir(&ws).args(&args).stdin(std::process::Stdio::null()).output().expect("run hutch up"))
}

/// Runs `sh -c script` in the "guest".
pub fn guest(fake: &FakeVmm, script: &str) -> Output {
    fake.run(&["exec", "--name", NAME, "--", "sh", "-c", script])
}

/// Every line of the VM's project's audit log, as JSON.
pub fn audit_lines(fake: &FakeVmm) -> Vec<serde_json::Value> {
    let text = crate::audit_log(&fake.state());
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON audit line")).collect()
}

/// The VM's network process's pid file.
pub fn net_pid(fake: &FakeVmm) -> u32 {
    let path: PathBuf = fake.state().join(format!("vms/{NAME}/net/net.pid"));
    std::fs::read_to_string(&path).expect("the network process's pid").trim().parse().expect("a pid")
}
