//! One module per subcommand; each turns parsed arguments into an exit code.

pub mod exec;
pub mod ping;
