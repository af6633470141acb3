//! `hutch doctor [--name NAME] [--json]`: host and guest checks, each failure
//! with its fix; exits 1 when something is broken.

use serde_json::Value;

use crate::cli::DoctorArgs;
use crate::doctor::{Check, Status, guest, host};
use crate::error::Error;
use crate::exit;
use crate::state::StateDir;

/// Runs `hutch doctor`; returns 0 when nothing failed, else
/// [`exit::DOCTOR_FOUND_FAILURES`].
pub async fn run(args: DoctorArgs) -> Result<u8, Error> {
    let state = StateDir::from_env()?;
    let mut checks = host::checks(&state);
    match args.agent.target(args.name.as_ref()) {
        Ok(target) => checks.extend(guest::checks(&target).await),
        Err(e) if args.name.is_some() || args.agent.addr.is_some() => {
            checks.push(Check::fail("VM", e.to_string(), e.hint().unwrap_or_else(|| "check the name with `hutch ls`".into())));
        }
        Err(_) => checks.push(Check::ok("VM", "none for this directory: guest checks skipped (pass --name)")),
    }
    if args.json {
        println!("{}", Value::Array(checks.iter().map(Check::to_json).collect()));
    } else {
        for check in &checks {
            check.print();
        }
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) { exit::DOCTOR_FOUND_FAILURES } else { 0 })
}
