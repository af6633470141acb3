//! The benchmark report: rows of figures and their anchors, printed as a table
//! a person reads at a glance and serialised as JSON for scripts.
//!
//! A hutch figure is one row; each anchor measured beside it follows as its own
//! row (figure column blank, anchor column filled) with the ratio "hutch is N×
//! faster/slower than this". Skipped or not-yet-available figures are notes.

use serde_json::{Value, json};

use super::stats::Stats;

/// What a figure measures, and so which way is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds; lower is better.
    Ms,
    /// Gigabytes (10^9) per second; higher is better.
    Gbps,
    /// Mebibytes of memory; lower is better.
    Mib,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Gbps => "GB/s",
            Unit::Mib => "MiB",
        }
    }

    fn higher_is_better(self) -> bool {
        self == Unit::Gbps
    }
}

/// A target from the issue, and whether this run met it.
#[derive(Clone, Debug)]
pub struct Goal {
    /// The target as written, e.g. "≤ 3 ms".
    pub text: String,
    /// Whether the measured value meets it.
    pub met: bool,
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// Stable identifier for the JSON output, e.g. `exec_true` or `exec_true.ssh_fresh`.
    pub key: String,
    /// The hutch figure (empty on anchor rows).
    pub figure: String,
    /// The anchor's description (empty on hutch rows).
    pub anchor: String,
    /// Unit of `stats`.
    pub unit: Unit,
    /// The measurement.
    pub stats: Stats,
    /// On anchor rows: how many times better hutch did than this anchor (> 1: hutch is better).
    pub hutch_advantage: Option<f64>,
    /// The target for this line, if it has one.
    pub goal: Option<Goal>,
}

/// Everything measured in one run, in order.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    /// Adds a hutch figure.
    pub fn figure(&mut self, key: &str, figure: &str, unit: Unit, stats: Stats, goal: Option<Goal>) {
        self.rows.push(Row { key: key.into(), figure: figure.into(), anchor: String::new(), unit, stats, hutch_advantage: None, goal });
    }

    /// Adds an anchor measured beside `hutch`; returns how many times better
    /// hutch did, for goals stated as ratios.
    pub fn anchor(&mut self, key: &str, anchor: &str, hutch: &Stats, stats: Stats, unit: Unit) -> f64 {
        let advantage = if unit.higher_is_better() { hutch.median / stats.median } else { stats.median / hutch.median };
        self.rows.push(Row {
            key: key.into(),
            figure: String::new(),
            anchor: anchor.into(),
            unit,
            stats,
            hutch_advantage: Some(advantage),
            goal: None,
        });
        advantage
    }

    /// Attaches a goal to the row added last.
    pub fn goal_on_last(&mut self, goal: Goal) {
        if let Some(row) = self.rows.last_mut() {
            row.goal = Some(goal);
        }
    }

    /// Adds a note (a skipped row, a row that needs a later issue).
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Prints the table and the notes on stdout.
    pub fn print(&self) {
        let header = ["figure", "median", "min", "max", "anchor (same run)", "hutch vs anchor", "goal met?"];
        let rows: Vec<Vec<String>> = self.rows.iter().map(|row| cells(row).to_vec()).collect();
        print_columns(&header, rows, |i| (1..=3).contains(&i), &self.notes);
    }

    /// The rows and notes as JSON.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut value = row.stats.json();
                value["key"] = json!(row.key);
                value["unit"] = json!(row.unit.label());
                if !row.figure.is_empty() {
                    value["figure"] = json!(row.figure);
                }
                if !row.anchor.is_empty() {
                    value["anchor"] = json!(row.anchor);
                }
                if let Some(advantage) = row.hutch_advantage {
                    value["hutch_advantage"] = json!(advantage);
                }
                if let Some(goal) = &row.goal {
                    value["goal"] = json!({ "text": goal.text, "met": goal.met });
                }
                value
            })
            .collect();
        json!({ "rows": rows, "notes": self.notes })
    }
}

/// Prints a table of the bench: `header`, a rule, `rows` in columns two
/// spaces apart (the columns `right` says are numbers, right-aligned; the
/// others left-aligned), then the notes after a blank line.
pub fn print_columns(header: &[&str], rows: Vec<Vec<String>>, right: impl Fn(usize) -> bool, notes: &[String]) {
    let mut lines = vec![header.iter().map(|h| (*h).to_owned()).collect(), Vec::new()];
    lines.extend(rows);
    let widths = widths(&lines);
    lines[1] = widths.iter().map(|w| "-".repeat(*w)).collect();
    for line in aligned(&lines, &widths, right) {
        println!("{line}");
    }
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("note: {note}");
        }
    }
}

/// The width of each column of `lines` (in characters).
fn widths(lines: &[Vec<String>]) -> Vec<usize> {
    let mut widths = Vec::new();
    for line in lines {
        widths.resize(widths.len().max(line.len()), 0);
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// `lines` as text in columns of `widths`, two spaces apart; the columns
/// `right` says are right-aligned (numbers), the others left-aligned.
fn aligned(lines: &[Vec<String>], widths: &[usize], right: impl Fn(usize) -> bool) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let mut out = String::new();
            for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
                let pad = " ".repeat(w.saturating_sub(cell.chars().count()));
                if right(i) {
                    out.push_str(&pad);
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&pad);
                }
                out.push_str("  ");
            }
            out.trim_end().to_owned()
        })
        .collect()
}

fn cells(row: &Row) -> [String; 7] {
    let unit = row.unit.label();
    let number = |v: f64| {
        let digits = if v >= 100.0 {
            0
        } else if v >= 10.0 {
            1
        } else {
            2
        };
        format!("{v:.digits$} {unit}")
    };
    let ratio = row
        .hutch_advantage
        .map_or_else(String::new, |a| if a >= 1.0 { format!("{} faster", times(a)) } else { format!("{} slower", times(1.0 / a)) });
    let goal = row.goal.as_ref().map_or_else(String::new, |g| format!("{} {}", if g.met { "yes" } else { "NO " }, g.text));
    [row.figure.clone(), number(row.stats.median), number(row.stats.min), number(row.stats.max), row.anchor.clone(), ratio, goal]
}

/// "4.6×", "120×": enough digits to read, no more.
fn times(x: f64) -> String {
    if x >= 10.0 { format!("{x:.0}×") } else { format!("{x:.1}×") }
}
