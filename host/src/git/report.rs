//! What the guest's repositories handed back, said to the user: one stderr
//! line per repository and kind, and one `git` event in the VM's audit log.
//!
//! Every name in it comes from the guest, and is shown only after it passed
//! `refname`'s checks (printable ASCII), or escaped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Commits or a tag that reached the host's repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrived {
    /// `main`, `tag v1`.
    pub name: String,
    /// The host's commit before (`None`: a new branch or tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The commit now.
    pub to: String,
    /// Commits the host did not have.
    pub commits: u64,
}

/// Something the guest has that the host did not take, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// What (`topic`, `tag v1`, a name as the guest gave it, escaped).
    pub name: String,
    /// Why.
    pub why: String,
    /// Where the host keeps the guest's version (`refs/hutch/<vm>/heads/topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

/// One repository's hand-back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoReport {
    /// Its worktree.
    pub repo: PathBuf,
    /// What arrived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arrived: Vec<Arrived>,
    /// What was refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
    /// Everything else the user should know (HEAD moved, the guest's own hooks…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl RepoReport {
    /// A report for the repository at `repo`.
    pub fn new(repo: &Path) -> RepoReport {
        RepoReport { repo: repo.to_path_buf(), ..RepoReport::default() }
    }

    /// Whether there is anything to say.
    pub fn is_empty(&self) -> bool {
        self.arrived.is_empty() && self.refused.is_empty() && self.notes.is_empty()
    }

    /// The stderr lines (without the `hutch: ` prefix), relative to `workspace`.
    pub fn lines(&self, workspace: &Path) -> Vec<String> {
        let at = match self.repo.strip_prefix(workspace) {
            Ok(rel) if rel.as_os_str().is_empty() => String::new(),
            Ok(rel) => format!(" ({})", rel.display()),
            Err(_) => format!(" ({})", self.repo.display()),
        };
        let mut lines = Vec::new();
        if !self.arrived.is_empty() {
            let items: Vec<String> = self.arrived.iter().map(arrived_text).collect();
            lines.push(format!("git{at}: from the guest: {}", items.join(", ")));
        }
        for refused in &self.refused {
            let kept = refused.kept.as_ref().map(|k| format!(" (kept as {k})")).unwrap_or_default();
            lines.push(format!("git{at}: refused {}: {}{kept}", refused.name, refused.why));
        }
        for note in &self.notes {
            lines.push(format!("git{at}: {note}"));
        }
        lines
    }
}

fn arrived_text(a: &Arrived) -> String {
    let plural = if a.commits == 1 { "" } else { "s" };
    match &a.from {
        Some(from) => format!("{} {}..{} ({} commit{plural})", a.name, short(from), short(&a.to), a.commits),
        None if a.name.starts_with("tag ") => format!("{} (new, {})", a.name, short(&a.to)),
        None if a.commits == 0 => format!("{} (new branch at {})", a.name, short(&a.to)),
        None => format!("{} (new branch, {} commit{plural})", a.name, a.commits),
    }
}

/// The first 9 digits of an object id.
pub fn short(oid: &str) -> &str {
    &oid[..oid.len().min(9)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_arrived_and_what_was_refused() {
        let mut report = RepoReport::new(Path::new("/w/lib"));
        report.arrived.push(Arrived { name: "main".into(), from: Some("a".repeat(40)), to: "b".repeat(40), commits: 2 });
        report.arrived.push(Arrived { name: "feature".into(), from: None, to: "c".repeat(40), commits: 1 });
        report.refused.push(Refused {
            name: "topic".into(),
            why: "diverged from the host's".into(),
            kept: Some("refs/hutch/vm/heads/topic".into()),
        });
        let lines = report.lines(Path::new("/w"));
        assert_eq!(lines[0], "git (lib): from the guest: main aaaaaaaaa..bbbbbbbbb (2 commits), feature (new branch, 1 commit)");
        assert_eq!(lines[1], "git (lib): refused topic: diverged from the host's (kept as refs/hutch/vm/heads/topic)");
        assert!(RepoReport::new(Path::new("/w")).is_empty());
    }
}
