//! `hutch completions SHELL` and `hutch man`: generated from the same clap
//! definitions as the parser, so they never drift from the real flags.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Error;

/// Prints the completion script for a shell.
pub async fn completions(args: CompletionsArgs) -> Result<u8, Error> {
    clap_complete::generate(args.shell, &mut Cli::command(), "hutch", &mut std::io::stdout());
    Ok(0)
}

/// Prints the man page.
pub async fn man() -> Result<u8, Error> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(|e| Error::local("writing the man page", e))?;
    Ok(0)
}
