//! Every cap the host puts on what an agent can make it hold, print, write
//! or wait for, in one place, each with the reason for its value.
//!
//! The agent runs in the guest, and root in the guest can replace it with
//! any program that speaks `hutch.v1.Agent`. Nothing it answers may make
//! hutch hold unbounded memory, write outside the project, fill the host's
//! disk through a log or wait forever. Going over a cap is an [`Exceeded`]
//! error that names the cap. The README's "What the host trusts from the
//! guest" table lists these values; change both together. (The deadlines
//! are in [`super::deadline`], the agent's own caps in the agent's
//! `limits.rs`.)

use std::fmt;

/// One cap: its name (as errors and the documentation say it), its value
/// and the unit of that value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// What is capped, as the user reads it in an error.
    pub name: &'static str,
    /// The largest value allowed.
    pub max: u64,
    /// The unit `max` counts.
    pub unit: Unit,
}

/// What a [`Limit`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// Items (entries, sessions, paths…).
    Items,
}

/// An answer from the agent went over a [`Limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the agent sent more than hutch accepts: {} (at least {got}, the limit is {})", limit.name, limit.shown())]
pub struct Exceeded {
    /// The cap.
    pub limit: Limit,
    /// How much the agent sent (or had sent when hutch stopped counting).
    pub got: u64,
}

impl Limit {
    /// `Ok` while `got` is within the cap.
    pub fn check(self, got: u64) -> Result<(), Exceeded> {
        if got <= self.max { Ok(()) } else { Err(Exceeded { limit: self, got }) }
    }

    /// [`Limit::check`] for a `usize` count or size.
    pub fn check_len(self, got: usize) -> Result<(), Exceeded> {
        self.check(u64::try_from(got).unwrap_or(u64::MAX))
    }

    /// The cap as a `usize` (saturating), for buffers.
    pub fn max_usize(self) -> usize {
        usize::try_from(self.max).unwrap_or(usize::MAX)
    }

    /// The value with its unit, as the documentation writes it.
    pub fn shown(self) -> String {
        match self.unit {
            Unit::Items => format!("{}", self.max),
            Unit::Bytes if self.max >= 1 << 20 && self.max.is_multiple_of(1 << 20) => format!("{} MiB", self.max >> 20),
            Unit::Bytes if self.max >= 1 << 10 && self.max.is_multiple_of(1 << 10) => format!("{} KiB", self.max >> 10),
            Unit::Bytes => format!("{} bytes", self.max),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.shown())
    }
}

/// A path from the guest (a diff's entry, a manifest's, a heavy dir's):
/// Linux's PATH_MAX, which no path of the host project exceeds (macOS's is
/// 1024), and the agent's own limit for paths the host sends it.
pub const PATH_BYTES: Limit = Limit { name: "path length", max: 4096, unit: Unit::Bytes };

/// One component of a guest path: NAME_MAX on Linux and macOS.
pub const NAME_BYTES: Limit = Limit { name: "file name length", max: 255, unit: Unit::Bytes };

/// Guest text (a status message, a start failure, a version string, a
/// hostname) in a message or log line: long enough for any real message,
/// short enough that it stays one readable line. Longer text is cut, with
/// its length noted; never refused.
pub const SHOWN_BYTES: Limit = Limit { name: "guest text shown", max: 1024, unit: Unit::Bytes };

/// Output `hutch exec --json` keeps per stream: the report is one JSON
/// object in memory, and scripts that want more stream the output instead.
/// Past it the command runs on, its output is counted and dropped, and the
/// report says how much (`stdout_cut_bytes`, `stderr_cut_bytes`).
pub const CAPTURED_BYTES: Limit = Limit { name: "output kept by exec --json, per stream", max: 8 << 20, unit: Unit::Bytes };

/// One file's contents held to make its `hutch diff` hunks (each side).
/// A larger file is noted in the patch (`Binary files … differ`, with a
/// warning) and must be copied by hand, as binary files are.
pub const DIFF_FILE_BYTES: Limit = Limit { name: "size of a file diffed", max: 8 << 20, unit: Unit::Bytes };

/// The patch `hutch diff` writes, held in an unlinked temporary file until
/// the agent has sent everything (so a diff the agent breaks off halfway
/// never prints a patch that `git apply` would take for whole).
pub const PATCH_BYTES: Limit = Limit { name: "size of a patch", max: 256 << 20, unit: Unit::Bytes };

/// Changed paths in one `hutch diff`: far above what anyone reviews as a
/// patch; each is handled and let go before the next, so this bounds time,
/// not memory.
pub const DIFF_ENTRIES: Limit = Limit { name: "changed paths in a diff", max: 1_000_000, unit: Unit::Items };

/// Entries of a `--ro` snapshot's manifest beyond the host's own tree:
/// the guest's snapshot holds what the host sent plus what programs in the
/// guest created in it. The manifest is held for the comparison, so this
/// keeps what the guest can add to the host's memory to about 30 MiB.
pub const MANIFEST_EXTRA_ENTRIES: Limit = Limit { name: "manifest entries beyond the host's", max: 200_000, unit: Unit::Items };

/// Sessions one `hutch ps` lists: the agent keeps 256 by default
/// (`--max-sessions`).
pub const SESSIONS_LISTED: Limit = Limit { name: "sessions listed", max: 10_000, unit: Unit::Items };

/// Characters of one cell of `hutch ps`'s table (a command line, a
/// reason): the table pads every row to its widest cell, so one long cell
/// would make every row that wide.
pub const TABLE_CELL_CHARS: Limit = Limit { name: "characters in a table cell", max: 120, unit: Unit::Items };

/// Repeated items (entries, sessions, arguments, capabilities) in one
/// message from the agent, counted on the wire before it is decoded: a
/// 4 MiB message of empty items decodes into 40-100 times its size in
/// memory. The agent sends manifests in chunks of 4096 entries.
pub const MESSAGE_ITEMS: Limit = Limit { name: "items in one message", max: 65_536, unit: Unit::Items };

/// The end of a console or VM-manager log read to show its last lines: the
/// guest writes its console, so the file may be any size.
pub const CONSOLE_TAIL_BYTES: Limit = Limit { name: "console tail read", max: 64 << 10, unit: Unit::Bytes };

/// One guest-sent field (a host name, a URL path, a message) stored in an
/// audit-log line: longer ones are cut, with their length noted.
pub const AUDIT_FIELD_BYTES: Limit = Limit { name: "audit field", max: 4096, unit: Unit::Bytes };

/// An audit log file before it is rotated: a guest that floods egress
/// requests or execs fills at most [`AUDIT_FILES`] of these per project.
pub const AUDIT_FILE_BYTES: Limit = Limit { name: "audit log file", max: 16 << 20, unit: Unit::Bytes };

/// Audit log files kept per project (the current one and rotated ones):
/// 64 MiB at most, weeks of ordinary use.
pub const AUDIT_FILES: usize = 4;

/// A hutch daemon's own log (the network process's `net/net.log`, the
/// multiplexer's `mux.log`) before its content moves to `NAME.log.1`: it
/// notes connections, problems and restarts, not every request (those are
/// in the audit log), so two of these are days of them.
pub const NET_LOG_BYTES: Limit = Limit { name: "daemon log", max: 4 << 20, unit: Unit::Bytes };

/// How long the diff of one file may compute before it falls back to a
/// coarser one: two large unrelated files would otherwise cost minutes.
pub const DIFF_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Refs the guest's repository may advertise when hutch takes its commits
/// (`crate::git::bridge`): a view lists the host's at most
/// ([`GIT_VIEW_REFS`]), and the guest adds its own branches and tags.
pub const GIT_GUEST_REFS: Limit = Limit { name: "refs a guest repository advertises", max: 510_000, unit: Unit::Items };

/// Refs of a host repository copied into the guest's view of it: the
/// largest public repositories have some 100,000 tags.
pub const GIT_VIEW_REFS: Limit = Limit { name: "refs of a repository the guest gets a copy of", max: 500_000, unit: Unit::Items };

/// Bytes one fetch takes from the guest by default (`HUTCH_GIT_FETCH_MAX`
/// raises it): a commit of some large files fits; a guest that would fill
/// the host's disk does not.
pub const GIT_FETCH_BYTES: Limit = Limit { name: "bytes one fetch takes from the guest", max: 4 << 30, unit: Unit::Bytes };

/// New commits of one guest ref checked for an added submodule; a ref
/// bringing more is refused (checking them all would take minutes).
pub const GIT_NEW_COMMITS: Limit = Limit { name: "new commits of one guest ref", max: 100_000, unit: Unit::Items };

/// A guest that sends nothing for this long while hutch fetches from it is
/// cut off (`git upload-pack` in the guest is given twice that).
pub const GIT_FETCH_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Repositories of one `GitState` answer looked at (a `Prepare` names at
/// most 256, each with at most 256 submodules).
pub const GIT_STATE_REPOS: Limit = Limit { name: "repositories a guest describes", max: 1024, unit: Unit::Items };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_names_itself_when_exceeded() {
        assert!(PATH_BYTES.check(4096).is_ok());
        let err = PATH_BYTES.check_len(4097).unwrap_err();
        assert_eq!(err.to_string(), "the agent sent more than hutch accepts: path length (at least 4097, the limit is 4 KiB)");
        assert_eq!(CAPTURED_BYTES.shown(), "8 MiB");
        assert_eq!(SESSIONS_LISTED.shown(), "10000");
        assert_eq!(NAME_BYTES.shown(), "255 bytes");
    }
}
