//! TCP listeners demand the bearer token; without it nothing runs.

use hutch_proto::v1::InfoRequest;
use hutch_proto::v1::agent_client::AgentClient;
use hutch_tests::{Agent, binaries, code, stderr, stdout};

#[test]
fn the_right_token_runs_commands() {
    let agent = Agent::tcp("s3cret-token");
    let out = agent.exec(&["echo", "over tcp"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "over tcp\n");
}

#[test]
fn a_wrong_token_is_refused_by_the_agent() {
    let agent = Agent::tcp("s3cret-token");
    let wrong = agent.dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let marker = agent.dir.path().join("ran");
    let out = agent
        .hutch()
        .env("HUTCH_TOKEN_FILE", &wrong)
        .args(["exec", "--", "touch", marker.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(!marker.exists(), "the command ran despite the wrong token");
}

#[test]
fn no_token_is_refused_by_the_agent() {
    let agent = Agent::tcp("s3cret-token");
    // A raw gRPC client, bypassing hutch's own check that a token is set.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        let url = agent.addr.replace("tcp://", "http://");
        let mut client = AgentClient::connect(url).await.expect("connect");
        client.info(InfoRequest {}).await.expect_err("Info without a token must fail")
    });
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[test]
fn hutch_refuses_tcp_without_a_token_and_says_how_to_fix_it() {
    let agent = Agent::tcp("s3cret-token");
    let out = agent.hutch().env_remove("HUTCH_TOKEN_FILE").args(["exec", "--", "true"]).output().unwrap();
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("--token-file"), "{}", stderr(&out));
}

#[test]
fn the_agent_will_not_listen_on_tcp_without_a_token() {
    let out = std::process::Command::new(&binaries().agent)
        .args(["--listen", &format!("tcp://127.0.0.1:{}", hutch_tests::free_tcp_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("without --token-file"), "{}", stderr(&out));
}
