//! The synced workspace's coherence rows: how long a small edit takes to
//! reach the other side while a command runs, host → the guest's copy and
//! the guest's copy → host.
//!
//! One `hutch exec` stays open in the synced VM for the whole measurement
//! (an exec flushes the sync when it starts and when it ends, so an exec per
//! edit would time that flush, not the sync's own pace). The host drives it a
//! line at a time on its stdin and reads its answers on its stdout; the files
//! are in [`FOLDER`] of the bench folder, synced like the rest:
//!
//! - **host → guest**: `watch V` makes the guest poll `probe` until it holds
//!   `V` (it answers `watching` first); the host then writes `V` into its
//!   `probe` and stops the clock when `seen V` arrives;
//! - **guest → host**: the host starts the clock, sends `write V` (the guest
//!   writes `V` into `back`), and polls its own `back` until it holds `V`;
//! - **the signal path**: `ping V` → `pong V`, the exec's own stdin → stdout
//!   round trip. Each edit figure holds about half of it (the answer's way
//!   out, or the request's way in) and up to one poll interval.
//!
//! Both sides poll every millisecond (the guest with bash's `read -t` on a
//! FIFO, which starts no process; else `usleep`) and give up at [`DEADLINE`]:
//! no fixed sleep stands for "it has arrived". The three figures are timed
//! in turn, one call at a time, after one untimed call each.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::super::Plan;
use super::super::stats::{Contender, Stats, Turns, time_interleaved};
use super::super::table::{Goal, Table, Unit};
use super::Guest;
use crate::workspace::Result;

/// The folder of the bench folder the edits are made in.
const FOLDER: &str = ".hutch-bench-edits";
/// A small edit's median is meant to reach the other side within this (ms),
/// each way, under TCG (docs/workspace-sync.md states the bound).
const EDIT_GOAL_MS: f64 = 200.0;
/// How long either side waits for an edit or an answer before it gives up.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often the host looks at its file while it waits.
const POLL: Duration = Duration::from_millis(1);

/// The guest's side, `sh -c EDITOR sh FOLDER POLLS`: answers the host's
/// requests (see the module's doc) until its stdin ends; a wait for `probe`
/// gives up after POLLS looks, a millisecond apart.
const EDITOR: &str = r#"cd "$1" || exit 1
polls=$2
nap() { usleep 1000 2>/dev/null || sleep 0.001; }
if [ -n "$BASH_VERSION" ] && fifo=$(mktemp -u) && mkfifo "$fifo" && exec 9<>"$fifo"; then
  rm -f "$fifo"
  nap() { read -r -t 0.001 -u 9 _; return 0; }
fi
echo ready
while read -r what value; do
  case $what in
    ping) echo "pong $value" ;;
    watch)
      echo watching
      v="" n=0
      until [ -e probe ] && read -r v < probe && [ "$v" = "$value" ]; do
        n=$((n + 1)); [ "$n" -gt "$polls" ] && break
        nap
      done
      if [ "$v" = "$value" ]; then echo "seen $value"; else echo "not seen $value"; fi ;;
    write) echo "$value" > back && echo "wrote $value" ;;
    *) echo "unknown $what" ;;
  esac
done"#;
/// Runs [`EDITOR`] under bash where the guest has it (a nap without a new
/// process), else under sh.
const LAUNCH: &str = r#"if command -v bash >/dev/null 2>&1; then exec bash -c "$0" sh "$@"; fi; exec sh -c "$0" sh "$@""#;

/// Makes the edits' folder afresh in the bench folder, before the synced VM
/// boots (its first copy takes it along).
pub(super) fn prepare(dir: &Path) -> Result<()> {
    let folder = dir.join(FOLDER);
    crate::bench_sync::remove(&folder)?;
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join("probe"), "start\n")?;
    Ok(())
}

/// Times `plan.sync_edits` small edits each way, and the signal path, in
/// the synced VM `guest` whose project is `dir`.
pub(super) fn measure(table: &mut Table, plan: &Plan, guest: &Guest, dir: &Path) -> Result<()> {
    let editor = RefCell::new(Editor::start(guest, dir)?);
    let n = plan.sync_edits;
    let mut contenders = vec![
        Contender::self_timed(n, || editor.borrow_mut().host_edit()),
        Contender::self_timed(n, || editor.borrow_mut().guest_edit()),
        Contender::self_timed(n, || editor.borrow_mut().round_trip()),
    ];
    let samples = time_interleaved(&mut contenders, Turns { block: 1, settle: false })?;
    drop(contenders);
    drop(editor);
    let stats = |i: usize| Stats::of(samples[i].clone()).ok_or("no samples");
    for (i, key, label) in [
        (0, "sync_edit_to_guest", "a small edit, host → the guest's copy (p50 = median)"),
        (1, "sync_edit_to_host", "a small edit, the guest's copy → host (p50 = median)"),
    ] {
        let edit = stats(i)?;
        let goal = Goal { text: format!("p50 ≤ {EDIT_GOAL_MS} ms"), met: edit.median <= EDIT_GOAL_MS };
        table.figure(key, label, Unit::Ms, edit, Some(goal));
    }
    table.figure("sync_edit_signal", "the bench's signal: exec stdin → stdout round trip", Unit::Ms, stats(2)?, None);
    table.note(format!(
        "edits: {n} each way while one `hutch exec` runs, in turn with the signal's round trip (about half of which is in \
         each edit row); both sides poll every 1 ms, with a {}-s deadline",
        DEADLINE.as_secs()
    ));
    Ok(())
}

/// The open `hutch exec` running [`EDITOR`], and the host's side of the files.
struct Editor {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The guest's answers, a line each (read by a thread of their own).
    answers: Receiver<String>,
    probe: PathBuf,
    back: PathBuf,
    /// Makes each value new to both sides, whatever an earlier run left.
    nonce: String,
    count: usize,
}

impl Editor {
    /// Starts the guest's side in `guest`'s copy of [`FOLDER`] and waits until it is ready.
    fn start(guest: &Guest, dir: &Path) -> Result<Editor> {
        let folder = format!("{}/{FOLDER}", guest.workspace);
        let polls = DEADLINE.as_millis().to_string();
        let mut child = guest
            .hutch(&["exec", "--name", guest.name(), "--", "sh", "-c", LAUNCH, EDITOR, &folder, &polls])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from hutch exec")?;
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(std::io::Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let nonce = format!("{:x}", SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos());
        let stdin = child.stdin.take();
        let edits = dir.join(FOLDER);
        let editor = Editor { child, stdin, answers, probe: edits.join("probe"), back: edits.join("back"), nonce, count: 0 };
        editor.expect("ready")?;
        Ok(editor)
    }

    /// A value neither side has seen yet.
    fn value(&mut self) -> String {
        self.count += 1;
        format!("{}-{}", self.nonce, self.count)
    }

    fn say(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or("the guest's input is closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits (at most [`DEADLINE`]) for the guest's next answer, which must be `want`.
    fn expect(&self, want: &str) -> Result<()> {
        match self.answers.recv_timeout(DEADLINE) {
            Ok(line) if line == want => Ok(()),
            Ok(line) => Err(format!("the guest answered {line:?}, not {want:?}").into()),
            Err(_) => Err(format!("no {want:?} from the guest within {} s", DEADLINE.as_secs()).into()),
        }
    }

    /// The signal path alone: `ping` → `pong`; ms.
    fn round_trip(&mut self) -> Result<f64> {
        let value = self.value();
        let began = Instant::now();
        self.say(&format!("ping {value}"))?;
        self.expect(&format!("pong {value}"))?;
        Ok(began.elapsed().as_secs_f64() * 1000.0)
    }

    /// A host edit until the guest sees it in its copy; ms.
    fn host_edit(&mut self) -> Result<f64> {
        let value = self.value();
        self.say(&format!("watch {value}"))?;
        self.expect("watching")?;
        let began = Instant::now();
        std::fs::write(&self.probe, format!("{value}\n"))?;
        self.expect(&format!("seen {value}"))?;
        Ok(began.elapsed().as_secs_f64() * 1000.0)
    }

    /// A guest edit until the host's file holds it; ms.
    fn guest_edit(&mut self) -> Result<f64> {
        let value = self.value();
        let want = format!("{value}\n");
        let began = Instant::now();
        self.say(&format!("write {value}"))?;
        while !std::fs::read(&self.back).is_ok_and(|held| held == want.as_bytes()) {
            if began.elapsed() > DEADLINE {
                return Err(format!("the guest's edit did not reach the host within {} s", DEADLINE.as_secs()).into());
            }
            std::thread::sleep(POLL);
        }
        let took = began.elapsed().as_secs_f64() * 1000.0;
        self.expect(&format!("wrote {value}"))?;
        Ok(took)
    }
}

impl Drop for Editor {
    /// Ends the guest's side by closing its input; kills the exec if it has
    /// not ended within [`DEADLINE`].
    fn drop(&mut self) {
        drop(self.stdin.take());
        let began = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && began.elapsed() < DEADLINE {
            std::thread::sleep(POLL * 10);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
