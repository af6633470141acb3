//! One agent serves many execs at once without mixing them up.

use std::process::Stdio;

use hutch_tests::Agent;

#[test]
fn fifty_concurrent_execs_each_get_their_own_output_and_code() {
    let agent = Agent::unix();
    let children: Vec<_> = (0..50)
        .map(|i| {
            let script =
                format!("i={i}; printf 'out-%s\\n' $i; printf 'err-%s\\n' $i >&2; head -c 100000 /dev/zero | tr '\\0' x; exit $((i % 7))");
            let child = agent
                .hutch()
                .args(["exec", "--", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (i, child)
        })
        .collect();
    for (i, child) in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(i % 7), "exec {i}");
        let expected_head = format!("out-{i}\n");
        assert!(out.stdout.starts_with(expected_head.as_bytes()), "exec {i} stdout starts {:?}", &out.stdout[..16.min(out.stdout.len())]);
        assert_eq!(out.stdout.len(), expected_head.len() + 100_000, "exec {i}");
        assert!(out.stdout[expected_head.len()..].iter().all(|&b| b == b'x'));
        assert_eq!(out.stderr, format!("err-{i}\n").into_bytes(), "exec {i}");
    }
}

#[test]
fn concurrent_ptys_do_not_leak_into_each_other() {
    // If one exec's terminal leaked into another's child, its master would not
    // see EOF when its own process exits, and its output would have to be cut.
    let agent = Agent::unix();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let child = agent
                .hutch()
                .args(["exec", "-t", "--json", "--", "sh", "-c", &format!("echo pty-{i}; sleep 0.{}", i % 3)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            (i, child)
        })
        .collect();
    for (i, child) in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["stdout"], format!("pty-{i}\r\n"), "exec {i}");
        assert_eq!(report["output_cut"], false, "exec {i}: its terminal was held open by another exec");
    }
}
