//! The environment the egress proxy needs in every process the agent starts:
//! set by the latest `EgressListen`, kept after it ends (a guest program
//! pointed at a proxy that is gone fails to connect, which is the point).

use std::sync::RwLock;

static NETWORK_ENV: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// Replaces the variables every new process gets.
pub fn set(vars: Vec<(String, String)>) {
    match NETWORK_ENV.write() {
        Ok(mut env) => *env = vars,
        Err(poisoned) => *poisoned.into_inner() = vars,
    }
}

/// The variables to add to a new process's environment, below the ones its
/// Exec call asks for.
pub fn defaults() -> Vec<(String, String)> {
    match NETWORK_ENV.read() {
        Ok(env) => env.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}
