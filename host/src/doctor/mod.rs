//! `hutch doctor`: what works and what does not, each problem with its fix.
//!
//! [`host`] looks at this machine (state dir, configuration, the backend's
//! tools and image); [`guest`] asks the VM's agent (version, workspace mount,
//! heavy dirs, disk space, latency).

pub mod guest;
pub mod host;

use serde_json::{Value, json};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worth knowing (slow, stale, about to fill up).
    Warn,
    /// Broken: hutch will not work until it is fixed.
    Fail,
}

/// One finding.
#[derive(Clone, Debug)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when not Ok.
    pub fix: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check { name: name.into(), status: Status::Ok, detail: detail.into(), fix: None }
    }

    /// A warning, with its fix.
    pub fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name: name.into(), status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }

    /// A failure, with its fix.
    pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name: name.into(), status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }

    /// For `--json`.
    pub fn to_json(&self) -> Value {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        };
        json!({ "check": self.name, "status": status, "detail": self.detail, "fix": self.fix })
    }

    /// One or two lines for people.
    pub fn print(&self) {
        let mark = match self.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("{mark} {}: {}", self.name, crate::untrusted::text::escaped(&self.detail));
        if let Some(fix) = &self.fix {
            println!("     fix: {}", crate::untrusted::text::escaped(fix));
        }
    }
}
