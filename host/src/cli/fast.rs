//! A parser for `hutch exec …` alone, the call scripts make many times a
//! minute.
//!
//! clap's derive builds the whole command tree (every subcommand, every flag,
//! every help text) before it looks at the first argument. For `exec` that is
//! about a quarter of the CLI's start-up on a small VM: allocations and page
//! faults for nineteen subcommands that will not run. This parser knows only
//! `exec`, with the same `ExecArgs` and the same global flags, so what it
//! accepts it parses exactly as the full parser would. Anything it does not
//! accept (help, version, a typo, another subcommand) goes to the full parser,
//! so every message a person sees still comes from one place.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use super::{Cli, Command, ExecArgs};

/// `hutch [-v…] exec …` and nothing else.
#[derive(Parser, Debug)]
#[command(name = "hutch")]
struct ExecOnly {
    /// Same as [`Cli::verbose`].
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: ExecOnlyCommand,
}

#[derive(Subcommand, Debug)]
enum ExecOnlyCommand {
    Exec(ExecArgs),
}

/// Parses `args` (program name first) when they are a well-formed
/// `hutch exec …`; `None` means "ask the full parser".
pub fn parse_exec<I, T>(args: I) -> Option<Cli>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.get(1).is_none_or(|first| first != "exec") {
        return None;
    }
    let ExecOnly { verbose, command: ExecOnlyCommand::Exec(exec) } = ExecOnly::try_parse_from(args).ok()?;
    Some(Cli { verbose, command: Command::Exec(exec) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the full parser makes of `args`, printed.
    fn full(args: &[&str]) -> String {
        format!("{:?}", Cli::try_parse_from(args).expect("the full parser accepts it"))
    }

    #[test]
    fn exec_lines_parse_exactly_as_the_full_parser_parses_them() {
        let lines: &[&[&str]] = &[
            &["hutch", "exec", "--", "true"],
            &["hutch", "exec", "true"],
            &["hutch", "exec", "-v", "--", "sh", "-c", "exit 3"],
            &["hutch", "exec", "-n", "web", "-t", "--cwd", "/srv", "-e", "A=1", "-e", "B=2", "--", "ls", "-la"],
            &["hutch", "exec", "--addr", "unix:///tmp/agent.sock", "--timeout", "1.5", "--json", "--no-stdin", "--", "env"],
            &["hutch", "exec", "-T", "--", "cat", "--", "-n"],
            &["hutch", "exec", "-vv", "git", "status", "--short"],
            &["hutch", "exec", "-d", "--tag", "build", "--buffer", "8M", "--", "make", "-j8"],
            &["hutch", "exec", "--keep", "-t", "--", "claude"],
            &["hutch", "exec", "--no-keep", "--", "claude"],
        ];
        for line in lines {
            let fast = parse_exec(line.iter().copied()).unwrap_or_else(|| panic!("fast parser refused {line:?}"));
            assert_eq!(format!("{fast:?}"), full(line), "for {line:?}");
        }
    }

    #[test]
    fn everything_else_goes_to_the_full_parser() {
        let lines: &[&[&str]] = &[
            &["hutch"],
            &["hutch", "up"],
            &["hutch", "-v", "exec", "--", "true"],
            &["hutch", "exec"],
            &["hutch", "exec", "--help"],
            &["hutch", "exec", "--version"],
            &["hutch", "exec", "--no-such-flag", "--", "true"],
            &["hutch", "exec", "-t", "-T", "--", "true"],
            &["hutch", "exec", "--timeout", "soon", "--", "true"],
            &["hutch", "exec", "--keep", "--no-keep", "--", "true"],
            &["hutch", "exec", "--buffer", "lots", "--", "true"],
        ];
        for line in lines {
            assert!(parse_exec(line.iter().copied()).is_none(), "fast parser accepted {line:?}");
        }
    }
}
