//! `read_file`, `write_file` and `list_dir`: files as the guest sees them.
//!
//! They run the guest's own POSIX `sh` with `dd`, `stat` and `cat` (GNU
//! coreutils or busybox) as the user commands run as, through the same
//! Exec stream as `exec`: so they see what a command sees (the project at
//! its path, heavy dirs, the guest's permissions), need no agent of a newer
//! protocol, and every byte and name that comes back is bounded like any
//! command's output. Writes go into the guest (for a shared workspace, the
//! guest's view of the project); hutch never writes a host file for them,
//! nor derives a host path from anything the guest says.

use base64::Engine;
use bytes::Bytes;
use rmcp::model::{Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{base64_arg, guest_failure};
use crate::mcp::call::Call;
use crate::mcp::error::ToolError;
use crate::mcp::guest_text::{meta, meta_bytes};
use crate::mcp::limits;
use crate::mcp::run::End;

/// `read_file`'s name.
pub const READ: &str = "read_file";
/// `write_file`'s name.
pub const WRITE: &str = "write_file";
/// `list_dir`'s name.
pub const LIST: &str = "list_dir";

/// Prints the file's size on a line, then `$3` bytes from offset `$2`.
/// Opening it first makes the shell say why it cannot (missing, denied).
const READ_SCRIPT: &str = r#"exec 3< "$1" || exit 2
if [ -d "$1" ]; then echo "$1: is a directory" >&2; exit 2; fi
stat -L -c %s -- "$1" || exit 2
[ "$3" -gt 0 ] || exit 0
exec dd bs=65536 iflag=skip_bytes,count_bytes skip="$2" count="$3" <&3 2>/dev/null"#;

/// Writes stdin to `$1`: `replace`, `append`, or `at` offset `$3` (the rest
/// kept); `$4` = 1 makes the parent folders first. Prints the size after.
const WRITE_SCRIPT: &str = r#"if [ "$4" = 1 ]; then d=$(dirname -- "$1") && mkdir -p -- "$d" || exit 2; fi
case $2 in
  replace) cat > "$1" || exit 2 ;;
  append) cat >> "$1" || exit 2 ;;
  at) exec 3<> "$1" || exit 2
      dd bs=65536 oflag=seek_bytes seek="$3" conv=notrunc of="$1" 2>/dev/null || { echo "$1: cannot write at offset $3" >&2; exit 2; } ;;
  *) exit 2 ;;
esac
stat -L -c %s -- "$1""#;

/// Lists folder `$1`, at most `$2` entries: a line `0` or `1` (more
/// entries exist), the names each ended by NUL, an empty name, then one
/// `stat` line per name (raw mode in hex, size, mtime, name), in order.
const LIST_SCRIPT: &str = r#"cd -- "$1" || exit 2
max=$2
shift 2
more=0
for f in * .[!.]* ..?*; do
  if [ -e "$f" ] || [ -h "$f" ]; then
    if [ "$#" -ge "$max" ]; then more=1; break; fi
    set -- "$@" "$f"
  fi
done
printf '%s\n' "$more"
[ "$#" -gt 0 ] || exit 0
printf '%s\0' "$@"
printf '\0'
exec stat -c '%f %s %Y %n' -- "$@""#;

/// `read_file`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// The file, absolute or relative to the project folder.
    pub path: String,
    /// Byte offset to start at (default 0).
    pub offset: Option<u64>,
    /// Bytes to read (default 262144, at most 4194304). Read large files in ranges: the result says the file's size.
    pub length: Option<u64>,
}

/// What `read_file` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReadOutput {
    /// The path as given.
    pub path: String,
    /// The file's size in bytes.
    pub size: u64,
    /// Where the returned bytes start.
    pub offset: u64,
    /// How many bytes are returned (may end before `length` so a UTF-8 character is not split).
    pub length: u64,
    /// The returned bytes reach the end of the file.
    pub eof: bool,
    /// The bytes as text, when they are UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The bytes in base64, when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

/// `write_file`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// The file, absolute or relative to the project folder.
    pub path: String,
    /// The text to write. Give this or `content_base64`.
    pub content: Option<String>,
    /// The bytes to write, base64-encoded (binary files).
    pub content_base64: Option<String>,
    /// Write at this byte offset, keeping the rest of the file (large files are written in ranges this way). Default: replace the whole file.
    pub offset: Option<u64>,
    /// Add to the end of the file instead of replacing it.
    #[serde(default)]
    pub append: bool,
    /// Create missing parent folders (default true).
    pub create_dirs: Option<bool>,
}

/// What `write_file` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WriteOutput {
    /// The path as given.
    pub path: String,
    /// Bytes written.
    pub bytes_written: u64,
    /// The file's size afterwards.
    pub size: u64,
}

/// `list_dir`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The folder, absolute or relative to the project folder (default: the project folder).
    pub path: Option<String>,
    /// Entries to return at most (default 1000, at most 10000).
    pub max_entries: Option<usize>,
}

/// One entry of a folder.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// "file", "dir", "symlink" or "other" (a symlink is not followed).
    pub kind: String,
    /// Size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Permission bits, in octal ("644").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Last modification, in seconds since 1970.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<i64>,
}

/// What `list_dir` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOutput {
    /// The folder as given.
    pub path: String,
    /// Its entries, by name (without `.` and `..`).
    pub entries: Vec<Entry>,
    /// The folder has more entries than were returned.
    pub truncated: bool,
}

/// `read_file`'s definition.
pub fn read_tool() -> Tool {
    Tool::new(
        READ,
        "Read a file in the VM (the project's files are at the same path as on the host). Returns its size and up to \
         `length` bytes from `offset`: as text when they are UTF-8, else base64. For a large file, read ranges: \
         the next range starts at offset + length.",
        serde_json::Map::new(),
    )
    .with_input_schema::<ReadParams>()
    .with_output_schema::<ReadOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// `write_file`'s definition.
pub fn write_tool() -> Tool {
    Tool::new(
        WRITE,
        "Write a file in the VM (the project's files are at the same path as on the host, so writing there edits the \
         project, except in a VM started with --ro, whose changes `diff` returns). Replaces the file by default; \
         `append` adds to its end; `offset` writes at a byte offset and keeps the rest. Missing parent folders are created.",
        serde_json::Map::new(),
    )
    .with_input_schema::<WriteParams>()
    .with_output_schema::<WriteOutput>()
    .with_annotations(ToolAnnotations::new().read_only(false).destructive(true).idempotent(true).open_world(false))
}

/// `list_dir`'s definition.
pub fn list_tool() -> Tool {
    Tool::new(
        LIST,
        "List a folder in the VM: each entry's name, kind (file, dir, symlink, other), size, permissions and \
         modification time, sorted by name. Use `glob` to find files in a whole tree.",
        serde_json::Map::new(),
    )
    .with_input_schema::<ListParams>()
    .with_output_schema::<ListOutput>()
    .with_annotations(ToolAnnotations::new().read_only(true).idempotent(true).open_world(false))
}

/// Reads a range of a file.
pub async fn read(call: &Call, params: ReadParams) -> Result<ReadOutput, ToolError> {
    let offset = params.offset.unwrap_or(0);
    let length = params.length.unwrap_or(limits::READ_DEFAULT).min(limits::OUTPUT_MAX as u64);
    {
        let mut audit = call.audit();
        audit.path = Some(call.redact(&params.path));
        audit.detail = Some(format!("bytes {offset}+{length}"));
    }
    let mut reached = call.reach().await?;
    let argv = script(READ_SCRIPT, [params.path.clone(), offset.to_string(), length.to_string()]);
    let command = call.command(argv, Call::default_cwd(&reached));
    let ran = call.run(&mut reached.client, command).await?;
    let failed = guest_failure(&ran, &format!("cannot read {}", meta(&params.path)));
    if !matches!(&ran.end, End::Exited(e) if crate::exit::of_exited(e).is_ok_and(|code| code == 0)) && !matches!(ran.end, End::Cut) {
        return Err(failed);
    }
    let (size, data) = header(&ran.stdout.head).ok_or(failed)?;
    let mut data = &data[..data.len().min(length as usize)];
    let eof = offset.saturating_add(data.len() as u64) >= size;
    // A range that ends inside a UTF-8 character ends before it instead,
    // so text read in ranges stays text.
    if let Err(e) = std::str::from_utf8(data)
        && e.error_len().is_none()
        && e.valid_up_to() > 0
        && !eof
    {
        data = &data[..e.valid_up_to()];
    }
    let (content, content_base64) = match std::str::from_utf8(data) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(data))),
    };
    Ok(ReadOutput { path: params.path, size, offset, length: data.len() as u64, eof, content, content_base64 })
}

/// Writes a file (or a range of it).
pub async fn write(call: &Call, params: WriteParams) -> Result<WriteOutput, ToolError> {
    let bytes = match (params.content, params.content_base64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => Bytes::from(base64_arg("content_base64", &encoded)?),
        (Some(_), Some(_)) => return Err(ToolError::Invalid("give `content` or `content_base64`, not both".into())),
        (None, None) => return Err(ToolError::Invalid("give the bytes to write: `content` (text) or `content_base64`".into())),
    };
    let (mode, offset) = match (params.offset, params.append) {
        (Some(_), true) => return Err(ToolError::Invalid("give `offset` or `append`, not both".into())),
        (Some(offset), false) => ("at", offset),
        (None, true) => ("append", 0),
        (None, false) => ("replace", 0),
    };
    {
        let mut audit = call.audit();
        audit.path = Some(call.redact(&params.path));
        audit.detail = Some(format!("{mode} {} bytes{}", bytes.len(), if mode == "at" { format!(" at {offset}") } else { String::new() }));
    }
    let mut reached = call.reach().await?;
    let dirs = if params.create_dirs.unwrap_or(true) { "1" } else { "0" };
    let argv = script(WRITE_SCRIPT, [params.path.clone(), mode.to_owned(), offset.to_string(), dirs.to_owned()]);
    let mut command = call.command(argv, Call::default_cwd(&reached));
    let written = bytes.len() as u64;
    command.stdin = Some(bytes);
    let ran = call.run(&mut reached.client, command).await?;
    let failed = guest_failure(&ran, &format!("cannot write {}", meta(&params.path)));
    if !matches!(&ran.end, End::Exited(e) if crate::exit::of_exited(e).is_ok_and(|code| code == 0)) {
        return Err(failed);
    }
    let size = std::str::from_utf8(&ran.stdout.head).ok().and_then(|t| t.trim().parse().ok()).ok_or(failed)?;
    Ok(WriteOutput { path: params.path, bytes_written: written, size })
}

/// Lists a folder.
pub async fn list(call: &Call, params: ListParams) -> Result<ListOutput, ToolError> {
    let max = params.max_entries.unwrap_or(limits::LIST_DEFAULT).clamp(1, limits::LIST_MAX);
    let mut reached = call.reach().await?;
    let cwd = Call::default_cwd(&reached);
    let path = params.path.unwrap_or_else(|| if cwd.is_empty() { ".".into() } else { cwd.clone() });
    call.audit().path = Some(call.redact(&path));
    let argv = script(LIST_SCRIPT, [path.clone(), max.to_string()]);
    let ran = call.run(&mut reached.client, call.command(argv, cwd)).await?;
    let failed = guest_failure(&ran, &format!("cannot list {}", meta(&path)));
    // stat exits 1 when an entry vanished meanwhile: the others are listed.
    if !matches!(&ran.end, End::Exited(e) if crate::exit::of_exited(e).is_ok_and(|code| code <= 1)) && !matches!(ran.end, End::Cut) {
        return Err(failed);
    }
    let (mut entries, more) = parse_listing(&ran.stdout.head).ok_or(failed)?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ListOutput { path, entries, truncated: more || matches!(ran.end, End::Cut) })
}

/// `sh -c SCRIPT sh ARGS…`: arguments reach the script as `$1`…, never
/// through the shell's parser.
fn script<const N: usize>(text: &str, args: [String; N]) -> Vec<String> {
    ["sh", "-c", text, "sh"].into_iter().map(str::to_owned).chain(args).collect()
}

/// A size line, then data.
fn header(output: &[u8]) -> Option<(u64, &[u8])> {
    let end = output.iter().position(|b| *b == b'\n')?;
    let size = std::str::from_utf8(&output[..end]).ok()?.trim().parse().ok()?;
    Some((size, &output[end + 1..]))
}

/// The entries of [`LIST_SCRIPT`]'s output, and whether there are more. A
/// name whose `stat` line is missing or does not match keeps its name only.
fn parse_listing(output: &[u8]) -> Option<(Vec<Entry>, bool)> {
    let (more, rest) = output.split_first_chunk::<2>()?;
    let more = match more {
        b"0\n" => false,
        b"1\n" => true,
        _ => return None,
    };
    if rest.is_empty() {
        return Some((Vec::new(), more));
    }
    let names_end = rest.windows(2).position(|w| w == b"\0\0")?;
    let names: Vec<&[u8]> = rest[..names_end].split(|b| *b == 0).collect();
    let mut stats = &rest[names_end + 2..];
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let mut entry = Entry { name: meta_bytes(name), kind: "other".into(), size: None, mode: None, modified: None };
        if let Some((fields, after)) = stat_line(stats, name) {
            let (raw, size, modified) = fields;
            entry.kind = match raw & 0o170_000 {
                0o040_000 => "dir",
                0o100_000 => "file",
                0o120_000 => "symlink",
                _ => "other",
            }
            .into();
            entry.size = Some(size);
            entry.mode = Some(format!("{:o}", raw & 0o7777));
            entry.modified = Some(modified);
            stats = after;
        }
        entries.push(entry);
    }
    Some((entries, more))
}

/// A `stat` line's raw mode, size and modification time.
type Stat = (u32, u64, i64);

/// One `stat -c '%f %s %Y %n'` line for `name` at the start of `stats`:
/// (raw mode, size, mtime) and what follows it. Names may hold newlines, so
/// the line is matched against the name it must end with.
fn stat_line<'a>(stats: &'a [u8], name: &[u8]) -> Option<(Stat, &'a [u8])> {
    let mut fields = stats.splitn(4, |b| *b == b' ');
    let mut number = |radix| fields.next().and_then(|f| std::str::from_utf8(f).ok()).and_then(|f| i64::from_str_radix(f, radix).ok());
    let (raw, size, modified) = (number(16)?, number(10)?, number(10)?);
    let rest = fields.next()?;
    let after = rest.strip_prefix(name)?.strip_prefix(b"\n")?;
    Some(((u32::try_from(raw).ok()?, u64::try_from(size).ok()?, modified), after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_keeps_odd_names_and_survives_a_vanished_entry() {
        let mut out = b"1\na\0new\nline\0gone\0d\0\0".to_vec();
        out.extend_from_slice(b"81a4 12 1700000000 a\n81ed 3 1700000001 new\nline\n41ed 4096 1700000002 d\n");
        let (entries, more) = parse_listing(&out).unwrap();
        assert!(more);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "new\\nline", "gone", "d"]);
        assert_eq!((entries[0].kind.as_str(), entries[0].size, entries[0].mode.as_deref()), ("file", Some(12), Some("644")));
        assert_eq!((entries[1].kind.as_str(), entries[1].mode.as_deref()), ("file", Some("755")));
        assert_eq!((entries[2].kind.as_str(), entries[2].size), ("other", None));
        assert_eq!((entries[3].kind.as_str(), entries[3].modified), ("dir", Some(1_700_000_002)));
        assert_eq!(parse_listing(b"0\n").unwrap().0.len(), 0);
        assert!(parse_listing(b"garbage").is_none());
    }

    #[test]
    fn a_read_header_is_a_size_line() {
        assert_eq!(header(b"24\nworld"), Some((24, &b"world"[..])));
        assert_eq!(header(b"x\n"), None);
    }
}
