//! `hutch fetch`: take the guest's commits into the host's repositories now
//! (hutch also does after every command that changed them, and at `down`).

use crate::cli::FetchArgs;
use crate::error::Error;
use crate::git::host_git::Repo;
use crate::git::take::{self, Source, Taken};
use crate::git::view::Head;
use crate::target::Target;

/// Runs `hutch fetch`; reports on stderr, exits 0 when everything was taken.
pub async fn run(args: FetchArgs) -> Result<u8, Error> {
    let target = args.agent.target(args.name.as_ref())?;
    let complete = match &target {
        Target::Vm { record, .. } if record.started_unix.is_none() => {
            return Err(Error::Usage(format!("VM {} is stopped: its commits were taken when it went down", record.name)));
        }
        Target::Vm { state, record } => {
            let handed = take::take_back(state, record).await;
            if !handed.guarded {
                eprintln!(
                    "hutch: git: VM {} has no repository under the guard (no shared workspace, --ro, or --unguarded-git): nothing to take",
                    record.name
                );
            } else if !handed.told {
                eprintln!("hutch: git: nothing new from the guest");
            }
            handed.complete
        }
        Target::Agent { addr, .. } => {
            let worktree = crate::workspace::resolve(args.workspace.as_deref())?;
            let gitdir = worktree.join(".git");
            let taken = Taken {
                repo: Repo::new(&gitdir, Some(worktree.clone())),
                guest_gitdir: args.guest_gitdir.clone().unwrap_or(gitdir.clone()),
                seed: Head::default(),
                object_format: Repo::new(&gitdir, Some(worktree.clone())).text(&["rev-parse", "--show-object-format"])?,
                shared_worktree: true,
            };
            let source = Source::Addr(addr.to_string(), args.agent.token_file.clone());
            let keep_as = args.keep_as.to_string();
            let (reports, complete) = tokio::task::spawn_blocking(move || take::take_all(&[taken], &source, &keep_as))
                .await
                .map_err(|e| Error::Usage(format!("fetching panicked: {e}")))?;
            crate::git::tell::tell(&reports, &worktree, None);
            if reports.iter().all(crate::git::report::RepoReport::is_empty) {
                eprintln!("hutch: git: nothing new from the guest");
            }
            complete
        }
    };
    Ok(if complete { 0 } else { crate::exit::HUTCH_FAILED })
}
