//! `hutch diff --apply`: the guest's changes written into the host's files
//! directly, with the checks the patch has, instead of through `git apply`.
//!
//! Each change comes checked from [`super::diff::changes`] (a plain path,
//! never inside `.git`, never through a symlink of the project). It is
//! applied only when the host's version is still the one last synced:
//! otherwise both sides changed it, and it is left for the user (the patch
//! of `hutch diff` shows both). Files are written below the workspace one
//! name at a time ([`Beneath`]): under a fresh name, then renamed into
//! place, with the guest's executable bit and nothing else of its mode
//! (as git keeps only 644 and 755). A symlink is made as the guest made
//! it; one that points outside the project is applied, and said.

use super::diff::{Change, Contents, Side};
use crate::untrusted::{Beneath, BeneathError, limits};

/// What `--apply` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files and symlinks created or replaced.
    pub written: usize,
    /// Files and symlinks removed.
    pub removed: usize,
    /// Changes left alone (each said on stderr).
    pub skipped: usize,
}

/// Applies `change` below `host`, telling `warn` what it did not apply.
pub fn apply(host: &Beneath, change: Change, applied: &mut Applied, warn: &mut dyn FnMut(String)) -> Result<(), BeneathError> {
    let path = &change.path;
    if change.host_changed {
        warn(format!("{path} changed on the host too since the last sync: not applied (see `hutch diff`)"));
        applied.skipped += 1;
        return Ok(());
    }
    match change.after {
        None => {
            host.remove_file(path)?;
            applied.removed += 1;
        }
        Some(Side::Link(target)) => {
            if target.starts_with(b"/") || target.split(|b| *b == b'/').any(|name| name == b"..") {
                warn(format!(
                    "{path} is a symlink to {}, which may point outside the project",
                    crate::untrusted::text::shown_bytes(&target)
                ));
            }
            host.symlink(path, &target)?;
            applied.written += 1;
        }
        Some(Side::File(_, Contents::TooLarge)) => {
            warn(format!("{path} is larger than {}: not applied, copy it by hand", limits::DIFF_FILE_BYTES.shown()));
            applied.skipped += 1;
        }
        Some(Side::File(mode, Contents::Held(data))) => {
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            host.write_file(path, mode, &mut data.as_slice(), limits::DIFF_FILE_BYTES)?;
            applied.written += 1;
        }
    }
    Ok(())
}
