//! One audit line for a person (`hutch audit` without `--json`): time, the
//! VM when it is not the one asked about, kind, what, outcome. Every field
//! is escaped and cut (`crate::untrusted::text`): the guest chose the host
//! names, paths and messages, and none of them may show as a line of its
//! own, move the cursor or reorder what follows.

use super::{Event, What};
use crate::untrusted::text;

/// `event` as one line; `own` is the VM asked about (its lines are not
/// labelled; other VMs' of the same project are).
pub fn line(event: &Event, own: &str) -> String {
    let time = text::shown(event.time.get(..23).unwrap_or(&event.time)).replace('T', " ");
    let vm = if event.vm.is_empty() || event.vm == own { String::new() } else { format!("[{}]  ", text::shown(&event.vm)) };
    let body = match &event.what {
        What::Egress(e) => {
            let (method, host) = (text::shown(&e.method), text::shown(&e.host));
            let target = match &e.path {
                Some(path) => format!("{method} {host}:{}{}", e.port, text::shown(path)),
                None => format!("{method} {host}:{}", e.port),
            };
            let why = match (&e.rule, &e.reason) {
                (_, Some(reason)) => text::shown(reason),
                (Some(rule), None) => text::shown(rule),
                (None, None) => String::new(),
            };
            let secrets = if e.secrets.is_empty() { String::new() } else { format!(" +{}", text::shown(&e.secrets.join(","))) };
            let status = e.status.map(|s| format!(" {s}")).unwrap_or_default();
            format!(
                "egress {:<5} {target}{status}{secrets}  {why}  ↑{} ↓{} {} ms",
                text::shown(&e.decision),
                size(e.bytes_up),
                size(e.bytes_down),
                e.duration_ms
            )
        }
        What::Exec(x) => {
            let end = match (&x.exit_code, &x.signal, &x.error) {
                (_, _, Some(error)) => format!("error: {}", text::shown(error)),
                (_, Some(signal), None) => text::shown(signal),
                (Some(code), None, None) => format!("exit {code}"),
                (None, None, None) => "?".into(),
            };
            format!("exec   {end:<7} {}  (in {}) {} ms", text::shown(&x.argv.join(" ")), text::shown(&x.cwd), x.duration_ms)
        }
        What::Tool(t) => {
            let end = match (&t.error, t.cancelled, &t.signal, &t.exit_code) {
                (_, true, _, _) => "cancelled".to_owned(),
                (Some(error), false, _, _) => format!("error: {}", text::shown(error)),
                (None, false, Some(signal), _) => text::shown(signal),
                (None, false, None, Some(code)) => format!("exit {code}"),
                (None, false, None, None) => "ok".into(),
            };
            let parts = [
                t.argv.join(" "),
                t.path.clone().unwrap_or_default(),
                t.session.clone().unwrap_or_default(),
                t.detail.clone().unwrap_or_default(),
            ];
            let what = parts.iter().filter(|s| !s.is_empty()).map(|s| text::shown(s)).collect::<Vec<_>>().join("  ");
            let cwd = t.cwd.as_ref().map(|c| format!("  (in {})", text::shown(c))).unwrap_or_default();
            let client = t.client.as_ref().map(|c| format!("  [{}]", text::shown(c))).unwrap_or_default();
            format!("mcp    {:<13} {end:<7} {what}{cwd} {} ms{client}", text::shown(&t.tool), t.duration_ms)
        }
        What::Git(report) => format!("git    {}", text::shown(&report.lines(std::path::Path::new("")).join("; "))),
        What::Policy(p) => {
            let what = if p.pattern.is_empty() {
                text::shown(&p.action)
            } else {
                format!("{} {}", text::shown(&p.action), text::shown(&p.pattern))
            };
            let mut line = format!("policy {what}  by {}", text::shown(&p.by));
            if let Some(saved) = &p.saved {
                line.push_str(&format!("; saved to {}", text::shown(saved)));
            }
            if !p.undone.is_empty() {
                line.push_str(&format!("; undid {}", text::shown(&p.undone.join(", "))));
            }
            if p.answered > 0 {
                line.push_str(&format!("; answered {} waiting", p.answered));
            }
            if p.cut > 0 {
                line.push_str(&format!("; cut {} open", p.cut));
            }
            line
        }
        What::Ask(a) => {
            // A suggestion from a guest's host name: shown escaped like the name itself.
            let pattern = text::shown(&crate::net::policy::Policy::suggestion(&a.host, a.port));
            format!(
                "ask    {} {}:{}  waiting up to {} s for an answer: `hutch allow {pattern}`, `hutch allow --once {pattern}` or `hutch deny {pattern}`",
                text::shown(&a.method),
                text::shown(&a.host),
                a.port,
                a.timeout_ms / 1000
            )
        }
    };
    format!("{time}  {vm}{body}")
}

/// A byte count for people: `512 B`, `1.5 kB`, `3.2 MB`.
fn size(bytes: u64) -> String {
    match bytes {
        0..1000 => format!("{bytes} B"),
        1000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Exec;

    #[test]
    fn a_line_shows_what_happened_and_nothing_the_guest_forged() {
        let deny = Event { time: "2026-12-01T16:04:50.114Z".into(), vm: "web".into(), what: crate::audit::example_refusal() };
        assert_eq!(
            line(&deny, "web"),
            "2026-12-01 16:04:50.114  egress deny  CONNECT example.com:443  not on the allow list  ↑0 B ↓0 B 0 ms"
        );
        assert!(line(&deny, "other").starts_with("2026-12-01 16:04:50.114  [web]  egress deny"));

        let forged = "x:443\n2026-12-01 16:04:52.301  exec   exit 0  npm install\x1b[2K";
        let What::Egress(mut egress) = deny.what.clone() else { panic!() };
        egress.host = forged.into();
        egress.path = Some("/\r2026-12-01 egress allow".into());
        let shown = line(&Event { what: What::Egress(egress), ..deny.clone() }, "web");
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(!shown.chars().any(text::is_unsafe), "{shown:?}");
        let exec = Event {
            what: What::Exec(Exec { argv: vec!["a\nb".into()], error: Some("\u{1b}]52;c;eA==\u{7}".into()), ..Exec::default() }),
            ..deny
        };
        assert!(!line(&exec, "web").chars().any(text::is_unsafe));
        let tool = Event {
            what: What::Tool(crate::audit::Tool {
                tool: "exec".into(),
                argv: vec!["make\n2026-12-01 exec exit 0".into()],
                exit_code: Some(2),
                ..crate::audit::Tool::default()
            }),
            ..exec
        };
        let shown = line(&tool, "web");
        assert!(shown.contains("mcp    exec          exit 2  make"), "{shown}");
        assert_eq!(shown.lines().count(), 1, "{shown}");
        let ask = Event {
            what: What::Ask(crate::audit::Asked {
                id: 1,
                host: "evil.example\n2026-12-01 egress allow\u{1b}[2K".into(),
                port: 443,
                method: "CONNECT".into(),
                timeout_ms: 60_000,
            }),
            ..tool.clone()
        };
        let shown = line(&ask, "web");
        assert!(shown.contains("ask    CONNECT evil.example") && shown.contains("waiting up to 60 s"), "{shown}");
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(!shown.chars().any(text::is_unsafe), "{shown:?}");
        let policy = Event {
            what: What::Policy(crate::audit::PolicyChange {
                action: "deny".into(),
                pattern: "example.com".into(),
                by: "hutch deny".into(),
                undone: vec!["\"example.com\" (hutch allow)".into()],
                cut: 2,
                ..crate::audit::PolicyChange::default()
            }),
            ..tool
        };
        assert_eq!(
            line(&policy, "web"),
            "2026-12-01 16:04:50.114  policy deny example.com  by hutch deny; undid \"example.com\" (hutch allow); cut 2 open"
        );
    }
}
