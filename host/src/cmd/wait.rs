//! `hutch wait TAG`: block until a session ends; exit with its code.

use hutch_proto::v1::SessionState;

use crate::cli::WaitArgs;
use crate::error::Error;
use crate::exec::Outcome;
use crate::sessions::{self, SessionError, printable};
use crate::untrusted::ProtocolError;

/// Runs `hutch wait`; the session's exit code, by the exit-code table.
pub async fn run(args: WaitArgs) -> Result<u8, Error> {
    let target = args.target.vm.target()?;
    let mut client = target.connect().await?;
    let info = sessions::wait(&mut client, &args.target.tag).await?;
    match (SessionState::try_from(info.state), info.exited) {
        (Ok(SessionState::SessionExited), Some(exited)) => {
            let outcome = Outcome::Exited(exited);
            if let Some(message) = outcome.message() {
                eprintln!("hutch: {message}");
            }
            Ok(outcome.exit_code())
        }
        (Ok(SessionState::SessionLost), _) => {
            Err(SessionError::Lost { name: printable(&info.name), reason: printable(&info.lost_reason) }.into())
        }
        _ => Err(SessionError::from(ProtocolError::Unexpected("answered a wait with a session that has not ended")).into()),
    }
}
