//! The Lima backend against a fake `limactl` on PATH whose forwarded socket
//! reaches a real hutch-agent: the exact commands each lifecycle command runs,
//! none on the exec hot path, and every failure as one clear message, exit 125.

use hutch_tests::fakes::{FakeVmm, argv};
use hutch_tests::{code, stderr, stdout};

fn ok(out: &std::process::Output) {
    assert_eq!(code(out), 0, "hutch failed:\n{}{}", stdout(out), stderr(out));
}

#[test]
fn lifecycle_commands_run_the_documented_limactl_commands() {
    let fake = FakeVmm::lima();
    let ws = fake.workspace();
    let ws_s = ws.to_str().unwrap();
    let template = fake.state().join("vms/web/lima.yaml");
    let template_s = template.to_str().unwrap();
    let created = vec![argv(&["create", "--name", "web", "--tty=false", template_s]), argv(&["start", "web"])];

    ok(&fake.run(&["up", "--name", "web", "--workspace", ws_s, "--cpus", "3", "--memory", "2048"]));
    assert_eq!(fake.take_commands(), created);
    let yaml = std::fs::read_to_string(&template).unwrap();
    assert!(yaml.contains("base: \"template://default\"\ncpus: 3\nmemory: \"2048MiB\"\n"), "{yaml}");
    assert!(yaml.contains(&format!("\"location\": \"{ws_s}\", \"mountPoint\": \"{ws_s}\", \"writable\": true")), "{yaml}");
    assert!(yaml.contains(r#"{"guestSocket": "/run/hutch/agent.sock", "hostSocket": "{{.Dir}}/sock/hutch.sock"}"#), "{yaml}");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(fake.state().join("vms/web/vm.json")).unwrap()).unwrap();
    assert_eq!(record["addr"], format!("unix://{}", fake.vmm_home().join("web/sock/hutch.sock").display()));

    let out = fake.run(&["exec", "--name", "web", "--", "sh", "-c", "echo hi; echo err >&2; exit 3"]);
    assert_eq!((code(&out), stdout(&out).as_str(), stderr(&out).as_str()), (3, "hi\n", "err\n"));
    assert_eq!(fake.take_commands(), Vec::<Vec<String>>::new());

    let out = fake.run(&["up", "--name", "web", "--workspace", ws_s]);
    ok(&out);
    assert!(stdout(&out).contains("already up"), "{}", stdout(&out));
    let out = fake.run(&["ls", "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((ls[0]["backend"].as_str(), ls[0]["state"].as_str()), (Some("lima"), Some("running")));
    assert_eq!(fake.take_commands(), Vec::<Vec<String>>::new());

    // `--name`, as `up` and `exec` take it, names the VM as well as the positional NAME.
    ok(&fake.run(&["down", "--name", "web"]));
    assert_eq!(fake.take_commands(), vec![argv(&["stop", "web"])]);
    assert!(fake.running().is_empty());

    let out = fake.run(&["exec", "--name", "web", "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("VM web is stopped"), "{}", stderr(&out));
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--json"])]);

    let out = fake.run(&["ls"]);
    assert!(stdout(&out).contains("stopped"), "{}", stdout(&out));
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--json"])]);

    ok(&fake.run(&["up", "--name", "web", "--workspace", ws_s]));
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--json"]), argv(&["start", "web"])]);

    ok(&fake.run(&["reset", "web"]));
    let mut reset = vec![argv(&["delete", "-f", "web"])];
    reset.extend(created);
    assert_eq!(fake.take_commands(), reset);
    let out = fake.run(&["exec", "--name", "web", "--", "echo", "again"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "again\n"));

    let out = fake.run(&["rm", "web"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("web is running"), "{}", stderr(&out));
    ok(&fake.run(&["rm", "-f", "-n", "web"]));
    assert_eq!(fake.take_commands(), vec![argv(&["delete", "-f", "web"])]);
    assert!(!fake.state().join("vms/web").exists());
    assert!(!fake.vmm_home().join("web").exists());
    assert!(fake.running().is_empty());
}

#[test]
fn run_rm_clones_an_instance_runs_the_command_and_deletes_it() {
    let fake = FakeVmm::lima();
    let out = fake.run(&["run", "--rm", "--image", "base", "--no-workspace", "--", "sh", "-c", "echo out; exit 7"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (7, "out\n"), "{}", stderr(&out));
    let commands = fake.take_commands();
    let name = commands.get(1).and_then(|c| c.get(2)).cloned().unwrap_or_default();
    assert!(name.starts_with("run-"), "{commands:?}");
    let n = name.as_str();
    let set = r#".cpus = 2 | .memory = "1024MiB" | .mounts = [] | .portForwards = [{"guestSocket": "/run/hutch/agent.sock", "hostSocket": "{{.Dir}}/sock/hutch.sock"}]"#;
    assert_eq!(
        commands,
        vec![argv(&["clone", "--help"]), argv(&["clone", "base", n, "--set", set]), argv(&["start", n]), argv(&["delete", "-f", n]),]
    );
    assert!(fake.running().is_empty());
}

#[test]
fn run_rm_from_a_template_creates_and_deletes() {
    let fake = FakeVmm::lima();
    let out = fake.run(&["run", "--rm", "--no-workspace", "--", "echo", "fresh"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "fresh\n"), "{}", stderr(&out));
    let commands = fake.take_commands();
    let verbs: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(verbs, ["create", "start", "delete"], "{commands:?}");
}

#[test]
fn a_lima_without_clone_is_a_clear_failure() {
    let mut fake = FakeVmm::lima();
    fake.env.push(("FAKE_LIMA_NO_CLONE".into(), "1".into()));
    let out = fake.run(&["run", "--rm", "--image", "base", "--no-workspace", "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("this Lima has no `limactl clone` (Lima 1.1+)"), "{}", stderr(&out));
    assert_eq!(fake.take_commands(), vec![argv(&["clone", "--help"])]);
}

#[test]
fn a_missing_instance_and_a_boot_timeout_are_clear_failures() {
    let mut fake = FakeVmm::lima();
    let out = fake.run(&["up", "--name", "web", "--image", "nosuch", "--no-workspace"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("`limactl clone nosuch web --set"), "{}", stderr(&out));
    assert!(stderr(&out).contains("instance \"nosuch\" does not exist"), "{}", stderr(&out));

    fake.env.push(("FAKE_LIMACTL_FAIL".into(), "start:boot-timeout".into()));
    let out = fake.run(&["up", "--name", "slow", "--no-workspace"]);
    assert_eq!(code(&out), 125);
    let err = stderr(&out);
    assert!(err.contains("`limactl start slow` failed: FATA[0600] did not receive an event with the \"running\" status"), "{err}");
}

#[test]
fn an_agent_that_never_answers_is_a_boot_timeout() {
    let mut fake = FakeVmm::lima();
    fake.env.push(("FAKE_LIMA_AGENT".into(), String::new()));
    fake.env.push(("HUTCH_BOOT_TIMEOUT".into(), "1".into()));
    let out = fake.run(&["up", "--name", "web", "--no-workspace"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("VM web did not boot: its agent did not answer within 1s"), "{}", stderr(&out));
    let commands = fake.take_commands();
    assert_eq!(commands.last(), Some(&argv(&["stop", "web"])), "{commands:?}");
    assert!(fake.running().is_empty());
}

#[test]
fn agent_install_by_name_logs_in_where_limactl_list_says_sshd_answers() {
    let fake = FakeVmm::lima();
    let ws = fake.workspace();
    ok(&fake.run(&["up", "--name", "web", "--workspace", ws.to_str().unwrap()]));
    // Nothing listens on that port: the failure names the endpoint Lima reported.
    let port = hutch_tests::free_tcp_port();
    let out = fake.hutch().args(["agent", "install", "--name", "web"]).env("FAKE_LIMA_SSH_PORT", port.to_string()).output().unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot connect to 127.0.0.1:{port} over SSH")), "{}", stderr(&out));
    ok(&fake.run(&["rm", "-f", "web"]));
}

#[test]
fn a_failing_limactl_list_fails_up_and_never_creates_the_vm_again() {
    let mut fake = FakeVmm::lima();
    ok(&fake.run(&["up", "--name", "web", "--no-workspace"]));
    ok(&fake.run(&["down", "web"]));
    fake.take_commands();

    // Lima cannot say whether the instance exists: that is an error, not "missing".
    fake.env.push(("FAKE_LIMACTL_FAIL".into(), "list:fail".into()));
    let out = fake.run(&["up", "--name", "web", "--no-workspace"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`limactl list --json` failed: FATA[0000] injected transient failure"), "{err}");
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--json"])]);

    // Once Lima answers again, the same instance starts: no create.
    fake.env.pop();
    ok(&fake.run(&["up", "--name", "web", "--no-workspace"]));
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--json"]), argv(&["start", "web"])]);
}

#[test]
fn a_project_with_a_repository_is_refused_unless_the_user_shares_it_unguarded() {
    let mut fake = FakeVmm::lima();
    let ws = fake.workspace();
    let ws_s = ws.to_str().unwrap();
    let up = ["up", "--name", "web", "--workspace", ws_s];
    fake.refuses_a_repository_it_cannot_guard(&up);
    ok(&fake.run(&up));
    let template = std::fs::read_to_string(fake.state().join("vms/web/lima.yaml")).unwrap();
    assert!(template.contains(&format!("\"location\": \"{ws_s}\", \"mountPoint\": \"{ws_s}\", \"writable\": true")), "{template}");
    ok(&fake.run(&["rm", "-f", "web"]));
}

#[test]
fn disk_sizes_go_into_the_template_or_the_clone_and_a_smaller_disk_is_refused() {
    let fake = FakeVmm::lima();
    let ws = fake.workspace();
    let hutch_in_ws = |args: &[&str]| fake.hutch().current_dir(&ws).args(args).stdin(std::process::Stdio::null()).output().unwrap();
    let disk_listed = |name: &str| {
        let out = std::process::Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fakes/limactl"))
            .args(["list", "--json"])
            .env("LIMA_HOME", fake.vmm_home())
            .output()
            .unwrap();
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|i| i["name"] == name)
            .map(|i| i["disk"].clone())
    };

    // From a template: `disk:` in the template hutch writes, from the configuration's `disk`.
    std::fs::write(ws.join("hutch.toml"), "disk = \"40G\"\n").unwrap();
    ok(&hutch_in_ws(&["up", "--name", "fresh", "--no-workspace"]));
    let yaml = std::fs::read_to_string(fake.state().join("vms/fresh/lima.yaml")).unwrap();
    assert!(yaml.contains("\nmemory: \"1024MiB\"\ndisk: \"40GiB\"\n"), "{yaml}");
    assert_eq!(disk_listed("fresh"), Some(serde_json::json!(40u64 << 30)));
    std::fs::remove_file(ws.join("hutch.toml")).unwrap();

    // A clone: `.disk` in its expression; Lima grows the copied disk.
    fake.take_commands();
    ok(&hutch_in_ws(&["up", "--name", "big", "--image", "base", "--no-workspace", "--disk", "200G"]));
    let commands = fake.take_commands();
    assert_eq!(commands[..2], [argv(&["clone", "--help"]), argv(&["list", "--json"])], "{commands:?}");
    assert!(commands[2][4].starts_with(".cpus = 2 | .memory = \"1024MiB\" | .disk = \"200GiB\" | "), "{commands:?}");
    assert_eq!(disk_listed("big"), Some(serde_json::json!(200u64 << 30)));

    // Less than the base's 100 GiB (Lima's default): refused before cloning.
    let out = hutch_in_ws(&["up", "--name", "small", "--image", "base", "--no-workspace", "--disk", "20G"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 125, "{err}");
    assert!(err.contains("Lima instance base has a disk of 100 GiB and a VM's disk can only be as big or bigger, not 20 GiB"), "{err}");
    assert!(err.contains("hint: a VM's disk starts as a copy of its image's and can only grow"), "{err}");
    assert_eq!(fake.take_commands(), vec![argv(&["clone", "--help"]), argv(&["list", "--json"])]);
    assert_eq!(disk_listed("small"), None);

    // A clone Lima rejects after copying the instance is deleted, and Lima's
    // rejected YAML lands in the VM's state folder, not in the project.
    let out = fake
        .hutch()
        .current_dir(&ws)
        .env("FAKE_LIMACTL_FAIL", "clone:rejected")
        .args(["up", "--name", "odd", "--image", "base", "--no-workspace"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("the YAML is invalid"), "{}", stderr(&out));
    let commands = fake.take_commands();
    assert_eq!(commands.last(), Some(&argv(&["delete", "-f", "odd"])), "{commands:?}");
    assert_eq!(disk_listed("odd"), None, "the half-made clone was left");
    assert!(!ws.join("lima.REJECTED.yaml").exists(), "Lima's rejected YAML was written into the project");
    for name in ["fresh", "big"] {
        ok(&fake.run(&["rm", "-f", name]));
    }
}
