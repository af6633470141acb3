//! Every limit the agent puts on what a client (or the guest's files) can
//! make it hold or do, in one place, each with the reason for its value.
//!
//! The agent's clients are the host's `hutch` and tools such as `tart exec`,
//! but it treats what arrives as hostile all the same: a bug on the host, a
//! token that leaked, a guest process that found the socket. None of these
//! may make it hold unbounded memory, descriptors or threads, or hang a call.
//! The "Limits" table of docs/agent.md lists these values; change both together.
//!
//! Two bounds live next to the code they shape: the output held per exec
//! whose client stopped reading is `exec::output::RESPONSE_QUEUE` chunks of
//! `exec::output::OUTPUT_CHUNK` (1 MiB) plus h2's send buffer per stream
//! (400 KiB); past that the child's writes block. Stdin waiting per exec is
//! `exec::input::STDIN_QUEUE` messages. A session's output is its ring's
//! capacity plus at most 1/32 of it for stream-switch records
//! (`exec::ring::max_marks`), and the same per-stream queues per client.

/// Largest gRPC message the agent decodes (tonic's default, stated here so it
/// is one of the documented limits): a `stdin`, `archive` or `delete` message
/// over it ends its call with RESOURCE_EXHAUSTED. hutch sends 64 KiB stdin
/// chunks, 256 KiB archive chunks and 4096 paths per delete list.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of an untrusted string (a path, a signal name, an id) that a log
/// line or a status message shows before it is cut: enough to recognise a
/// path, short enough that a status fits in any client's header limits and
/// a log line stays one line.
pub const SHOWN_BYTES: usize = 200;

/// Longest path the agent accepts from a Sync (a tar entry, a link target,
/// a delete, a snapshot root): Linux's PATH_MAX, which the host's own paths
/// cannot exceed (macOS's is 1024). It is checked before a path is read
/// into memory, logged or echoed.
pub const MAX_PATH_BYTES: usize = 4096;

/// Largest PAX extended header in a Sync archive. hutch's host writes one
/// `mtime` record per entry (30 bytes) and `path`/`linkpath` records of at
/// most [`MAX_PATH_BYTES`]; 64 KiB leaves room for other writers' records.
pub const MAX_PAX_BYTES: usize = 64 * 1024;

/// Zeros accepted after a Sync archive's end marker: tar writers pad to a
/// record (hutch: 1 KiB; GNU tar: 10 KiB). More, or anything but zeros, is
/// refused; the stream is read to its end so zstd checks its checksum.
pub const MAX_ARCHIVE_TRAILER: usize = 1024 * 1024;

/// Largest zstd window a Sync archive may ask for (2^23 = 8 MiB of decoder
/// memory): zstd levels up to 19 use at most that; hutch uses level 1
/// (512 KiB). Without it a hostile frame makes the decoder allocate 128 MiB
/// (zstd's default maximum) or, with long mode, 2 GiB.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Paths in one `delete` message of a Sync: hutch sends 4096 per message,
/// and deletions are applied as they arrive, so a Sync may delete any
/// number of paths; only one message's list is ever held.
pub const MAX_DELETE_PATHS: usize = 16_384;

/// Sync messages (`delete` lists, `archive` chunks) queued between the call
/// and the thread that applies them: enough to keep that thread busy (the
/// host's 256 KiB chunks arrive faster than they unpack), and a bound on
/// what a Sync holds besides HTTP/2's own window: at most 4 messages of at
/// most [`MAX_MESSAGE_BYTES`].
pub const SYNC_QUEUE: usize = 4;

/// Connections served at once per listener (Unix socket, vsock, TCP).
/// Further ones wait in the kernel's backlog until one ends, costing the
/// agent nothing. hutch opens one connection per command (or one per VM
/// through its multiplexer), so 128 is far above use; together with
/// [`HANDSHAKE_TIMEOUT`] it keeps a flood of idle connections from taking
/// every descriptor.
pub const MAX_CONNECTIONS: usize = 128;

/// How long a new connection has to send the HTTP/2 preface and its first
/// frame before it is closed. hutch sends them at once; 10 s leaves room for
/// a loaded guest under emulation.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Pause between accept attempts while the agent is out of descriptors
/// (EMFILE, ENFILE) or memory: the connection waits in the backlog, and
/// the agent does not spin at 100% CPU retrying.
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Streams one connection may have open at once
/// (SETTINGS_MAX_CONCURRENT_STREAMS). Each open Exec costs the agent a task,
/// queues and HTTP/2 state (about 12 KiB before its process starts), so
/// 20,000 streams cost 286 MB; hutch's multiplexer carries every command of
/// a VM on one connection, and 256 concurrent commands is far above use
/// (a client past it waits for a stream to end).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Largest HTTP/2 frame a client may send: the SETTINGS_MAX_FRAME_SIZE the
/// agent advertises (1 MiB, so a 256 KiB chunk travels as one frame).
pub const MAX_FRAME_BYTES: usize = hutch_proto::MAX_FRAME_SIZE as usize;

/// Largest header block (HEADERS and its CONTINUATIONs, compressed) a
/// client may send, and the decoded header list
/// (SETTINGS_MAX_HEADER_LIST_SIZE): gRPC metadata is a few hundred bytes;
/// grpc-go and grpc-java default to 8-16 KiB.
pub const MAX_HEADER_BLOCK_BYTES: usize = 64 * 1024;

/// See [`MAX_HEADER_BLOCK_BYTES`].
pub const MAX_HEADER_LIST_BYTES: usize = 64 * 1024;

/// A session's output buffer when it asks for none: a few screens of a
/// busy build, the scrollback a person returning to a coding agent wants,
/// and 100 of them (400 MiB) still fit a small VM's memory.
pub const SESSION_BUFFER: usize = 4 << 20;

/// The smallest buffer a session gets whatever it asks for: one read of a
/// pipe's default 64 KiB is the unit anything smaller would split.
pub const SESSION_BUFFER_MIN: usize = 4096;

/// Default of `--session-buffer-max`, the largest buffer one session may
/// ask for.
pub const SESSION_BUFFER_MAX: u64 = 64 << 20;

/// Default of `--session-memory`: output buffers of all kept sessions
/// together. A new session past it first drops finished ones, and is
/// refused (SESSION_LIMIT) only when running ones fill it.
pub const SESSION_MEMORY: u64 = 1 << 30;

/// Default of `--max-sessions`: sessions kept at once, finished ones
/// included (each costs a task and a few KiB besides its buffer).
pub const MAX_SESSIONS: usize = 256;

/// How long a finished session keeps its status and buffer: long enough to
/// come back from lunch to `hutch wait` and `hutch logs`.
pub const SESSION_KEEP: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long it stays once its end was reported (`wait`, `ps`, an attached
/// client, `logs` to the end): `hutch wait x && hutch logs x` still works.
pub const SESSION_KEEP_REPORTED: std::time::Duration = std::time::Duration::from_secs(60);
