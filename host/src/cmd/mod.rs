//! One module per subcommand; each turns parsed arguments into an exit code.

pub mod diff;
pub mod down;
pub mod exec;
pub mod ls;
pub mod ping;
pub mod reset;
pub mod rm;
pub mod run;
pub mod shell;
pub mod sync;
pub mod up;
