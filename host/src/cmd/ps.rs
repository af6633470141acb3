//! `hutch ps [--json]`: a VM's sessions.

use crate::cli::PsArgs;
use crate::error::Error;
use crate::sessions::{self, table};

/// Runs `hutch ps`.
pub async fn run(args: PsArgs) -> Result<u8, Error> {
    let target = args.vm.target()?;
    let mut client = target.connect().await?;
    let list = sessions::list(&mut client).await?;
    if args.json {
        println!("{}", table::json(&list));
    } else {
        print!("{}", table::text(&list));
        if let Some(note) = table::empty_note(&list) {
            eprintln!("hutch: {note}");
        }
    }
    Ok(0)
}
