//! `hutch ping`: is the agent there, what is it, and how far away.

use std::time::{Duration, Instant};

use hutch_proto::v1::InfoResponse;
use serde_json::json;

use crate::cli::PingArgs;
use crate::error::Error;
use crate::untrusted::{ProtocolError, text};

/// Runs `hutch ping`; returns the exit code.
pub async fn run(args: PingArgs) -> Result<u8, Error> {
    let target = args.agent.target(args.name.as_ref())?;
    let begin = Instant::now();
    let client = target.connect().await?;
    let addr = target.addr_text();
    let connect = begin.elapsed();
    let mut info = None;
    let mut rtts = Vec::with_capacity(args.count as usize);
    for _ in 0..args.count {
        let sent = Instant::now();
        let answer = client.describe().await?;
        rtts.push(sent.elapsed());
        info = Some(answer);
    }
    let info = info.ok_or(ProtocolError::Unexpected("gave no answer")).map_err(crate::transport::CallError::from)?;
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    let (min, max) = (rtts[0], rtts[rtts.len() - 1]);
    if args.json {
        let shown = |t: &str| text::shown(t);
        let report = json!({
            "addr": addr,
            "version": shown(&info.version), "os": shown(&info.os), "arch": shown(&info.arch), "kernel": shown(&info.kernel),
            "hostname": shown(&info.hostname), "protocol": info.protocol,
            "capabilities": info.capabilities.iter().map(|c| shown(c)).collect::<Vec<_>>(),
            "uptime_ms": info.uptime_ms, "agent_pid": info.pid,
            "connect_ms": ms(connect), "rtt_ms": { "median": ms(median), "min": ms(min), "max": ms(max), "count": rtts.len() },
        });
        println!("{report}");
    } else {
        println!("{}", describe(&addr, &info));
        println!(
            "round trip {:.3} ms (median of {}, min {:.3}, max {:.3}); connect {:.3} ms",
            ms(median),
            rtts.len(),
            ms(min),
            ms(max),
            ms(connect)
        );
    }
    if info.protocol != hutch_proto::PROTOCOL {
        eprintln!("hutch: warning: the agent speaks protocol {}, this hutch speaks {}", info.protocol, hutch_proto::PROTOCOL);
    }
    Ok(0)
}

/// The agent's description, its text (the guest's) escaped and cut.
fn describe(addr: &str, info: &InfoResponse) -> String {
    format!(
        "hutch-agent {} at {addr}: {}/{} (kernel {}), host {}, protocol {}, up {}",
        text::shown(&info.version),
        text::shown(&info.os),
        text::shown(&info.arch),
        text::shown(&info.kernel),
        text::shown(&info.hostname),
        info.protocol,
        uptime(Duration::from_millis(info.uptime_ms))
    )
}

fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
