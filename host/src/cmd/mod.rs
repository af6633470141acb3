//! One module per subcommand; each turns parsed arguments into an exit code.

pub mod agent;
pub mod allow;
pub mod attach;
pub mod audit;
pub mod completions;
pub mod config;
pub mod diff;
pub mod doctor;
pub mod down;
pub mod exec;
pub mod forward;
pub mod image;
pub mod kill;
pub mod logs;
pub mod ls;
pub mod mcp;
pub mod ping;
pub mod ps;
pub mod reset;
pub mod rm;
pub mod run;
pub mod shell;
pub mod sync;
mod termination;
pub mod up;
pub mod wait;
