//! Every bound of `hutch mcp` in one place, each with its reason. What comes
//! back from the guest is cut to these whatever the guest sends; what a
//! client asks for is clamped to the maximums.

use std::time::Duration;

/// `exec`'s timeout when the client gives none: long enough for a test
/// suite or a build, short enough that a hung command does not hold a
/// model forever (sessions are for longer work).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest timeout a client may ask for (`exec`, `session_wait`): a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Bytes of each of stdout and stderr `exec` returns by default: a few
/// screens, about 8,000 tokens, so one noisy command does not fill a
/// model's context.
pub const OUTPUT_DEFAULT: usize = 32 * 1024;
/// The most a client may ask for per stream (`max_output_bytes`), and per
/// `read_file` or `session_logs` call.
pub const OUTPUT_MAX: usize = 4 * 1024 * 1024;

/// Bytes `read_file` returns when the client gives no `length`: most source
/// files whole.
pub const READ_DEFAULT: u64 = 256 * 1024;

/// `list_dir` entries returned by default, and at most (the names go on a
/// command line in the guest: 10,000 of them stay far below its limit).
pub const LIST_DEFAULT: usize = 1000;
/// See [`LIST_DEFAULT`].
pub const LIST_MAX: usize = 10_000;

/// `glob` and `search` results returned by default, and at most.
pub const MATCHES_DEFAULT: usize = 200;
/// See [`MATCHES_DEFAULT`].
pub const MATCHES_MAX: usize = 5_000;
/// Characters kept of one matching line (minified files have lines of
/// megabytes).
pub const LINE_CHARS: usize = 500;

/// Bytes of a session's output `session_logs` returns by default.
pub const LOGS_DEFAULT: usize = 32 * 1024;
/// How long `session_logs` reads a session's buffer: it holds at most the
/// agent's `--session-buffer-max` (64 MiB), which takes far less; an agent
/// that streams without end is cut off here.
pub const LOGS_READ: Duration = Duration::from_secs(30);

/// `session_wait`'s timeout when the client gives none (the session runs
/// on when it expires; waiting again is cheap).
pub const WAIT_DEFAULT: Duration = Duration::from_secs(600);

/// The largest patch `diff` returns (it says that it cut).
pub const PATCH_MAX: usize = 4 * 1024 * 1024;

/// The most warnings `diff` returns (each names one file).
pub const DIFF_WARNINGS_MAX: usize = 100;

/// Recent refusals `network` returns by default, and at most.
pub const DENIALS_DEFAULT: usize = 20;
/// See [`DENIALS_DEFAULT`].
pub const DENIALS_MAX: usize = 500;
/// Bytes read from the end of the audit log for them: a long-lived VM's log
/// grows without bound, and recent lines are at its end.
pub const AUDIT_TAIL: u64 = 4 * 1024 * 1024;

/// How long a guest command behind a file or search tool may take: these
/// read and list, and a tree that takes longer should be narrowed.
pub const GUEST_TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes kept of such a command's output: a read of [`OUTPUT_MAX`] plus its
/// header, a listing of [`LIST_MAX`] long names, [`MATCHES_MAX`] results.
pub const GUEST_TOOL_OUTPUT: usize = 8 * 1024 * 1024;
/// Bytes kept of such a command's stderr (its error message, or rg's
/// warnings about files it could not read).
pub const GUEST_TOOL_ERRORS: usize = 4096;

/// Tool calls served at once: each holds at most a few times
/// [`GUEST_TOOL_OUTPUT`]; more wait their turn.
pub const CONCURRENT_CALLS: usize = 16;
