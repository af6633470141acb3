//! Configuration files: layered user → project → flags, each value's source
//! shown, unknown keys refused with file and line, env passed to commands.

use std::path::Path;
use std::process::{Command, Stdio};

use hutch_tests::{Agent, binaries, code, stderr, stdout};

/// A hutch whose user config lives in `home` and that runs in `project`.
fn hutch_in(project: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(&binaries().hutch);
    cmd.current_dir(project).env("XDG_CONFIG_HOME", home).env_remove("HUTCH_BACKEND").stdin(Stdio::null());
    cmd
}

#[test]
fn layers_override_in_order_and_name_their_source() {
    let (project, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::create_dir_all(home.path().join("hutch")).unwrap();
    let user_file = home.path().join("hutch/config.toml");
    std::fs::write(&user_file, "cpus = 4\nmemory = 4096\n").unwrap();
    std::fs::write(project.path().join("hutch.toml"), "memory = 512\nheavy = [\"dist\"]\n").unwrap();
    let nested = project.path().join("src/deep");
    std::fs::create_dir_all(&nested).unwrap();

    let out = hutch_in(&nested, home.path()).args(["config", "--json"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["cpus"]["value"], 4);
    assert_eq!(config["cpus"]["source"], user_file.display().to_string());
    assert_eq!(config["memory"]["value"], 512);
    assert_eq!(config["memory"]["source"], project.path().join("hutch.toml").display().to_string());
    assert_eq!(config["heavy"]["value"], serde_json::json!(["dist"]));
    assert_eq!(config["backend"]["source"], "default");

    let text = stdout(&hutch_in(&nested, home.path()).arg("config").output().unwrap());
    assert!(text.contains("memory = 512") && text.contains("hutch.toml"), "{text}");
}

#[test]
fn unknown_keys_are_errors_with_file_and_line() {
    let (project, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(project.path().join("hutch.toml"), "cpus = 2\n\n[hooks]\nruntme = \"x.sh\"\n").unwrap();
    let out = hutch_in(project.path(), home.path()).arg("config").output().unwrap();
    assert_eq!(code(&out), 125);
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:4: ", project.path().join("hutch.toml").display())), "{err}");
    assert!(err.contains("runtme") && err.contains("hint: "), "{err}");
}

#[test]
fn configured_env_reaches_commands_and_flags_win() {
    let agent = Agent::unix();
    let (project, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(project.path().join("hutch.toml"), "env = [\"FROM_FILE=file\", \"BOTH=file\", \"PASSED_THROUGH\"]\n").unwrap();
    let out = hutch_in(project.path(), home.path())
        .env("HUTCH_ADDR", &agent.addr)
        .env("PASSED_THROUGH", "local value")
        .args(["exec", "-e", "BOTH=flag", "--", "sh", "-c", "echo \"$FROM_FILE|$BOTH|$PASSED_THROUGH\""])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "file|flag|local value\n");
}

#[test]
fn completions_and_man_page_come_from_the_real_flags() {
    let hutch = &binaries().hutch;
    let bash = Command::new(hutch).args(["completions", "bash"]).output().unwrap();
    assert_eq!(code(&bash), 0);
    let script = stdout(&bash);
    for word in ["hutch", "exec", "doctor", "--timeout"] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let man = Command::new(hutch).arg("man").output().unwrap();
    assert_eq!(code(&man), 0);
    assert!(
        stdout(&man).starts_with(".ie \\n(.g .ds Aq") || stdout(&man).contains(".TH hutch"),
        "{}",
        &stdout(&man)[..80.min(stdout(&man).len())]
    );
    let bad = Command::new(hutch).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(code(&bad), 125);
}
