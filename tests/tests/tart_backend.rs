//! The Tart backend against a fake `tart` on PATH whose VMs' control sockets
//! reach a real hutch-agent: the exact commands each lifecycle command runs,
//! none on the exec hot path, and every failure as one clear message, exit 125.

use hutch_tests::fakes::{FakeVmm, argv};
use hutch_tests::{code, stderr, stdout};

fn ok(out: &std::process::Output) {
    assert_eq!(code(out), 0, "hutch failed:\n{}{}", stdout(out), stderr(out));
}

#[test]
fn lifecycle_commands_run_the_documented_tart_commands() {
    let fake = FakeVmm::tart();
    let ws = fake.workspace();
    let ws_s = ws.to_str().unwrap();
    // Softnet blocks every direct route: the guest's way out is hutch's proxy.
    let run_line = argv(&["run", "web", "--no-graphics", "--net-softnet-block=0.0.0.0/0", &format!("--dir=workspace:{ws_s}")]);
    let created =
        vec![argv(&["clone", "base", "web"]), argv(&["set", "web", "--cpu", "3", "--memory", "2048", "--random-mac"]), run_line.clone()];

    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--workspace", ws_s, "--cpus", "3", "--memory", "2048"]));
    assert_eq!(fake.take_commands(), created);
    let control = fake.vmm_home().join("vms/web/control.sock");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(fake.state().join("vms/web/vm.json")).unwrap()).unwrap();
    assert_eq!(record["addr"], format!("unix://{}", control.display()));
    assert_eq!(
        record["backend_state"]["share"]["source"],
        serde_json::json!({"kind": "tart_dir", "name": "workspace", "read_only": false})
    );

    // The hot path reads the record and connects: no tart at all.
    let out = fake.run(&["exec", "--name", "web", "--", "sh", "-c", "echo hi; echo err >&2; exit 3"]);
    assert_eq!((code(&out), stdout(&out).as_str(), stderr(&out).as_str()), (3, "hi\n", "err\n"));
    assert_eq!(fake.take_commands(), Vec::<Vec<String>>::new());

    // hutch's own `tart run` is alive: up and ls need no tart either.
    let out = fake.run(&["up", "--name", "web", "--image", "base", "--workspace", ws_s]);
    ok(&out);
    assert!(stdout(&out).contains("already up"), "{}", stdout(&out));
    let out = fake.run(&["ls", "--json"]);
    ok(&out);
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((ls[0]["name"].as_str(), ls[0]["backend"].as_str(), ls[0]["state"].as_str()), (Some("web"), Some("tart"), Some("running")));
    assert_eq!(fake.take_commands(), Vec::<Vec<String>>::new());

    ok(&fake.run(&["down", "web"]));
    assert_eq!(fake.take_commands(), vec![argv(&["stop", "web"])]);
    assert!(fake.running().is_empty(), "tart run outlived `hutch down`");

    // A stopped VM: exec fails with the reason (asking tart only after failing).
    let out = fake.run(&["exec", "--name", "web", "--", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("VM web is stopped"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hutch up --name web"), "{}", stderr(&out));
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--format", "json"])]);

    let out = fake.run(&["ls"]);
    ok(&out);
    assert!(stdout(&out).contains("stopped"), "{}", stdout(&out));
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--format", "json"])]);

    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--workspace", ws_s]));
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--format", "json"]), run_line.clone()]);

    ok(&fake.run(&["reset", "web"]));
    let mut reset = vec![argv(&["stop", "web"]), argv(&["delete", "web"])];
    reset.extend(created);
    assert_eq!(fake.take_commands(), reset);
    let out = fake.run(&["exec", "--name", "web", "--", "echo", "again"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "again\n"));

    let out = fake.run(&["rm", "web"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("web is running"), "{}", stderr(&out));
    assert_eq!(fake.take_commands(), Vec::<Vec<String>>::new());

    ok(&fake.run(&["rm", "-f", "web"]));
    assert_eq!(fake.take_commands(), vec![argv(&["stop", "web"]), argv(&["delete", "web"])]);
    assert!(!fake.state().join("vms/web").exists());
    assert!(!fake.vmm_home().join("vms/web").exists());
    assert!(fake.running().is_empty());
}

#[test]
fn run_rm_clones_runs_the_command_and_deletes_the_clone() {
    let fake = FakeVmm::tart();
    let out = fake.run(&["run", "--rm", "--image", "base", "--no-workspace", "--", "sh", "-c", "echo out; exit 7"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (7, "out\n"), "{}", stderr(&out));
    let commands = fake.take_commands();
    let name = commands.first().and_then(|c| c.get(2)).cloned().unwrap_or_default();
    assert!(name.starts_with("run-"), "{commands:?}");
    let n = name.as_str();
    assert_eq!(
        commands,
        vec![
            argv(&["clone", "base", n]),
            argv(&["set", n, "--cpu", "2", "--memory", "1024", "--random-mac"]),
            argv(&["run", n, "--no-graphics", "--net-softnet-block=0.0.0.0/0"]),
            argv(&["stop", n]),
            argv(&["delete", n]),
        ]
    );
    assert!(fake.running().is_empty());
    assert!(!fake.vmm_home().join("vms").join(n).exists());
}

#[test]
fn a_missing_base_vm_is_a_clear_failure() {
    let fake = FakeVmm::tart();
    let out = fake.run(&["up", "--name", "web", "--image", "nosuch", "--no-workspace"]);
    assert_eq!(code(&out), 125);
    let err = stderr(&out);
    assert!(err.contains("`tart clone nosuch web` failed: Error: the specified VM \"nosuch\" does not exist"), "{err}");
    assert_eq!(fake.take_commands(), vec![argv(&["clone", "nosuch", "web"])]);

    let out = fake.run(&["up", "--name", "web2", "--no-workspace"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("no base image given"), "{}", stderr(&out));
}

#[test]
fn a_failing_tart_list_fails_up_and_never_creates_the_vm_again() {
    let mut fake = FakeVmm::tart();
    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--no-workspace"]));
    ok(&fake.run(&["down", "web"]));
    fake.take_commands();

    // Tart cannot say whether the VM exists: that is an error, not "missing".
    fake.env.push(("FAKE_TART_FAIL".into(), "list:fail".into()));
    let out = fake.run(&["up", "--name", "web", "--image", "base", "--no-workspace"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`tart list --format json` failed: Error: The operation couldn't be completed. (injected transient failure)"),
        "{err}"
    );
    assert_eq!(fake.take_commands(), vec![argv(&["list", "--format", "json"])]);
    assert!(fake.vmm_home().join("vms/web").exists());

    // Once Tart answers again, the same VM starts: no clone.
    fake.env.pop();
    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--no-workspace"]));
    assert_eq!(
        fake.take_commands(),
        vec![argv(&["list", "--format", "json"]), argv(&["run", "web", "--no-graphics", "--net-softnet-block=0.0.0.0/0"])]
    );
}

#[test]
fn a_vm_already_running_elsewhere_is_a_clear_failure() {
    let mut fake = FakeVmm::tart();
    fake.env.push(("FAKE_TART_FAIL".into(), "run:already-running".into()));
    let out = fake.run(&["up", "--name", "web", "--image", "base", "--no-workspace"]);
    assert_eq!(code(&out), 125);
    let err = stderr(&out);
    assert!(err.contains("`tart run web` exited; it said: Error: VM \"web\" is already running!"), "{err}");
}

#[test]
fn an_agent_that_never_answers_is_a_boot_timeout() {
    let mut fake = FakeVmm::tart();
    // The guest has no agent: the control socket accepts and hangs up.
    fake.env.push(("FAKE_TART_AGENT".into(), String::new()));
    fake.env.push(("HUTCH_BOOT_TIMEOUT".into(), "1".into()));
    let out = fake.run(&["up", "--name", "web", "--image", "base", "--no-workspace"]);
    assert_eq!(code(&out), 125);
    let err = stderr(&out);
    assert!(err.contains("VM web did not boot: its agent did not answer within 1s"), "{err}");
    assert!(err.contains("tart run ("), "the hint shows tart run's log: {err}");
    let commands = fake.take_commands();
    assert_eq!(commands.last(), Some(&argv(&["stop", "web"])), "the half-booted VM is stopped: {commands:?}");
    assert!(fake.running().is_empty());
}

#[test]
fn a_missing_tart_says_how_to_install_it() {
    let mut fake = FakeVmm::tart();
    fake.env.push(("HUTCH_TART".into(), "/nonexistent/tart".into()));
    let out = fake.run(&["up", "--name", "web", "--image", "base", "--no-workspace"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("/nonexistent/tart is not installed"), "{}", stderr(&out));
    assert!(stderr(&out).contains("brew install cirruslabs/cli/tart"), "{}", stderr(&out));
}

#[test]
fn without_a_control_socket_hutch_uses_tart_ip_and_a_token() {
    let mut fake = FakeVmm::tart();
    let tcp = hutch_tests::Agent::tcp("s3cret");
    let port = tcp.addr.rsplit_once(':').unwrap().1.to_owned();
    fake.env.push(("HUTCH_TART_TOKEN_FILE".into(), tcp.token_file.as_ref().unwrap().display().to_string()));
    fake.env.push(("HUTCH_TART_AGENT_PORT".into(), port.clone()));
    fake.env.push(("HUTCH_BOOT_TIMEOUT".into(), "30".into()));
    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--no-workspace"]));
    let mut commands = fake.take_commands();
    // `tart ip` runs while the detached `tart run` starts: either may log first.
    commands[2..].sort();
    assert_eq!(commands[2..], [argv(&["ip", "--wait", "30", "web"]), argv(&["run", "web", "--no-graphics"])], "{commands:?}");
    let out = fake.run(&["exec", "--name", "web", "--", "echo", "over-tcp"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "over-tcp\n"), "{}", stderr(&out));
    assert_eq!(fake.take_commands(), Vec::<Vec<String>>::new());
    ok(&fake.run(&["rm", "-f", "web"]));
}

#[test]
fn a_control_socket_beyond_the_unix_path_limit_is_still_reached() {
    let mut fake = FakeVmm::tart();
    // 104..=107 bytes: too long for macOS's sockaddr_un (and so for hutch's
    // direct connect), short enough for the fake to bind on Linux.
    let prefix = fake.root.path().join("t");
    let fill = 105 - prefix.as_os_str().len() - "/vms/web/control.sock".len();
    let home = PathBuf::from(format!("{}{}", prefix.display(), "x".repeat(fill)));
    std::fs::create_dir_all(home.join("vms/base")).unwrap();
    std::fs::copy(fake.vmm_home().join("vms/base/config.json"), home.join("vms/base/config.json")).unwrap();
    let socket = home.join("vms/web/control.sock");
    assert_eq!(socket.as_os_str().len(), 105);
    fake.env.push(("TART_HOME".into(), home.display().to_string()));
    ok(&fake.run(&["up", "--name", "web", "--image", "base", "--no-workspace"]));
    let out = fake.run(&["exec", "--name", "web", "--", "echo", "far"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "far\n"), "{}", stderr(&out));
    ok(&fake.run(&["rm", "-f", "web"]));
}

use std::path::PathBuf;

#[test]
fn a_project_with_a_repository_is_refused_unless_the_user_shares_it_unguarded() {
    let mut fake = FakeVmm::tart();
    let ws = fake.workspace();
    let ws_s = ws.to_str().unwrap();
    let up = ["up", "--name", "web", "--image", "base", "--workspace", ws_s];
    fake.refuses_a_repository_it_cannot_guard(&up);
    // The user's own configuration opts out: the share is as before.
    ok(&fake.run(&up));
    let commands = fake.take_commands();
    assert_eq!(
        commands.last(),
        Some(&argv(&["run", "web", "--no-graphics", "--net-softnet-block=0.0.0.0/0", &format!("--dir=workspace:{ws_s}")]))
    );
    ok(&fake.run(&["rm", "-f", "web"]));
    fake.env.pop();
    // And so does the flag, for one VM.
    ok(&fake.run(&["up", "--name", "web2", "--image", "base", "--workspace", ws_s, "--unguarded-git"]));
    ok(&fake.run(&["rm", "-f", "web2"]));
}

#[test]
fn disk_sizes_become_tart_set_disk_size_and_a_smaller_disk_is_refused() {
    let fake = FakeVmm::tart();
    let list = |fake: &FakeVmm| -> serde_json::Value {
        let out = fake.hutch().args(["ls"]).output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let tart = std::process::Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fakes/tart"))
            .args(["list", "--format", "json"])
            .env("TART_HOME", fake.vmm_home())
            .output()
            .unwrap();
        serde_json::from_slice(&tart.stdout).unwrap()
    };
    // 60 GiB is 64.4 GB: rounded up to whole GB, as Tart counts.
    ok(&fake.run(&["up", "--name", "big", "--image", "base", "--no-workspace", "--disk", "60G"]));
    let commands = fake.take_commands();
    assert_eq!(commands[1], argv(&["set", "big", "--cpu", "2", "--memory", "1024", "--random-mac", "--disk-size", "65"]), "{commands:?}");
    let vms = list(&fake);
    let big = vms.as_array().unwrap().iter().find(|vm| vm["Name"] == "big").unwrap();
    assert_eq!(big["Disk"], 65, "{vms}");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(fake.state().join("vms/big/vm.json")).unwrap()).unwrap();
    assert_eq!(record["disk_bytes"], 60u64 << 30);

    // The base's disk is 50 GB: Tart refuses 20 GiB, hutch deletes the clone and says why.
    let out = fake.run(&["up", "--name", "small", "--image", "base", "--no-workspace", "--disk", "20G"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 125, "{err}");
    assert!(err.contains("Tart cannot give small a disk of 22 GB (--disk)"), "{err}");
    assert!(err.contains("new disk size of 22 GB should be larger than the current disk size of 50 GB"), "{err}");
    assert!(err.contains("hint: a VM's disk starts as a copy of its image's and can only grow"), "{err}");
    let set = argv(&["set", "small", "--cpu", "2", "--memory", "1024", "--random-mac", "--disk-size", "22"]);
    assert_eq!(fake.take_commands(), vec![argv(&["clone", "base", "small"]), set, argv(&["delete", "small"])]);
    assert!(!fake.vmm_home().join("vms/small").exists(), "the refused clone was left");
    assert!(!fake.state().join("vms/small/vm.json").exists(), "the refused VM has a record");

    // Beyond what `tart set --disk-size` takes (a UInt16 of GB): refused before anything runs.
    let out = fake.run(&["up", "--name", "huge", "--image", "base", "--no-workspace", "--disk", "70000G"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("more than Tart takes (`tart set --disk-size` goes up to 65535 GB)"), "{}", stderr(&out));
    assert_eq!(fake.take_commands(), Vec::<Vec<String>>::new());
    ok(&fake.run(&["rm", "-f", "big"]));
}
