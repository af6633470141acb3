//! Writing a rule into a configuration file (`hutch allow --save`, `hutch
//! deny --save`) the way a person would: the file keeps its comments,
//! order, spacing and the style of its arrays (`toml_edit` edits the
//! document in place); only the `[network]` table's `allow` or `deny`
//! array changes, and the same pattern leaves the other one.
//!
//! The result is checked to be a configuration hutch reads before it
//! replaces the file (written beside it, then renamed), and the line of the
//! new entry is what `hutch` names as the rule's source from then on.

use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Value};

use super::ConfigFile;
use crate::config::pattern::HostPattern;

/// Which list of `[network]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    /// `allow`.
    Allow,
    /// `deny`.
    Deny,
}

impl List {
    fn key(self) -> &'static str {
        match self {
            List::Allow => "allow",
            List::Deny => "deny",
        }
    }

    fn other(self) -> List {
        match self {
            List::Allow => List::Deny,
            List::Deny => List::Allow,
        }
    }
}

/// What a save did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// The file.
    pub path: PathBuf,
    /// The entry's line (1-based): new, or the one that was already there.
    pub line: usize,
    /// Whether the entry was there already.
    pub existed: bool,
    /// How many entries of the other list with the same pattern were removed.
    pub removed: usize,
}

impl Saved {
    /// `FILE:LINE`, as rules name their source.
    pub fn source(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }
}

/// Why a file could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Reading or writing the file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What hutch was doing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML, or its `[network]` is not a table of arrays.
    #[error("{}: {why}; it was left as it is", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Adds `pattern` to `list` of `path`'s `[network]` table (the file and the
/// table are made if missing), and removes it from the other list.
pub fn save_rule(path: &Path, list: List, pattern: &HostPattern) -> Result<Saved, EditError> {
    let unusable = |why: String| EditError::Unusable { path: path.to_path_buf(), why };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(EditError::Io { what: "reading", path: path.to_path_buf(), source }),
    };
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| unusable(e.message().to_owned()))?;
    let network = doc.entry("network").or_insert(toml_edit::table());
    let table = network.as_table_like_mut().ok_or_else(|| unusable("`network` is not a table".into()))?;
    let removed = match table.get_mut(list.other().key()) {
        Some(item) => {
            let array = item.as_array_mut().ok_or_else(|| unusable(format!("network.{} is not an array", list.other().key())))?;
            remove_entries(array, pattern)
        }
        None => 0,
    };
    let item = table.entry(list.key()).or_insert(Item::Value(Value::Array(Array::new())));
    let array = item.as_array_mut().ok_or_else(|| unusable(format!("network.{} is not an array", list.key())))?;
    let existed = array.iter().any(|value| same(value, pattern));
    if !existed {
        push_like_the_others(array, pattern.to_string());
    }
    let new_text = doc.to_string();
    let parsed = ConfigFile::parse(&new_text, path).map_err(|e| unusable(format!("the edit would not read back ({e})")))?;
    let line = entry_line(&parsed, list, pattern).ok_or_else(|| unusable("the new entry is not where it was written".into()))?;
    if new_text != text {
        write_keeping_mode(path, &new_text)?;
    }
    Ok(Saved { path: path.to_path_buf(), line, existed, removed })
}

/// Removes the entries that are `pattern`, with the rest of their line (a
/// comment after `"x",` is the next entry's prefix in the document, and
/// belongs to the entry removed); how many.
fn remove_entries(array: &mut Array, pattern: &HostPattern) -> usize {
    let mut removed = 0;
    for index in (0..array.len()).rev() {
        if !array.get(index).is_some_and(|value| same(value, pattern)) {
            continue;
        }
        array.remove(index);
        removed += 1;
        if let Some(next) = array.get_mut(index) {
            let prefix = next.decor().prefix().and_then(|p| p.as_str()).unwrap_or_default().to_owned();
            let kept = match prefix.find('\n') {
                Some(newline) => prefix[newline..].to_owned(),
                None if index == 0 => String::new(),
                None => " ".to_owned(),
            };
            next.decor_mut().set_prefix(kept);
        }
    }
    removed
}

/// Whether an array entry is `pattern` (written in any equivalent way).
fn same(value: &Value, pattern: &HostPattern) -> bool {
    value.as_str().and_then(|text| text.parse::<HostPattern>().ok()).is_some_and(|p| p.to_string() == pattern.to_string())
}

/// Appends `text` indented as the array's last entry (one per line stays
/// one per line), keeping a trailing comma where there was one. A comment
/// after the last entry (`"x",  # why`) stays with that entry.
fn push_like_the_others(array: &mut Array, text: String) {
    let mut value = Value::from(text);
    let Some(last) = array.iter().last().map(|last| last.decor().prefix().and_then(|p| p.as_str()).unwrap_or(" ").to_owned()) else {
        array.push(value);
        return;
    };
    let trailing = array.trailing().as_str().unwrap_or_default().to_owned();
    let prefix = match (last.rfind('\n'), trailing.find('\n')) {
        (Some(newline), Some(end)) => {
            // The rest of the last entry's line (its comment) stays on that line.
            array.set_trailing(&trailing[end..]);
            format!("{}\n{}", &trailing[..end], &last[newline + 1..])
        }
        (Some(newline), None) => format!("\n{}", &last[newline + 1..]),
        (None, _) => " ".to_owned(),
    };
    value.decor_mut().set_prefix(prefix);
    value.decor_mut().set_suffix("");
    array.push_formatted(value);
}

fn entry_line(parsed: &ConfigFile, list: List, pattern: &HostPattern) -> Option<usize> {
    let network = parsed.network.as_ref()?;
    let entries = match list {
        List::Allow => network.allow.as_ref()?,
        List::Deny => network.deny.as_ref()?,
    };
    let entry = entries.iter().find(|e| e.get_ref().parse::<HostPattern>().is_ok_and(|p| p.to_string() == pattern.to_string()))?;
    let offset = entry.span().start;
    Some(parsed.line_starts.partition_point(|start| *start <= offset).max(1))
}

/// Replaces `path` with `text` (written beside it, then renamed), keeping its mode.
fn write_keeping_mode(path: &Path, text: &str) -> Result<(), EditError> {
    let io = |what: &'static str| move |source| EditError::Io { what, path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.hutch-{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    std::fs::write(&tmp, text).map_err(io("writing"))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("replacing")(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        text.parse().unwrap()
    }

    #[test]
    fn comments_and_layout_stay_and_the_line_is_the_new_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hutch.toml");
        let text = "# my project\ncpus = 4  # enough\n\n[network]\n# registries we use\nallow = [\n  \"pypi.org\",   # python\n  \"files.pythonhosted.org\",  # its files\n]\ndeny = [\"registry.npmjs.org\", \"gist.github.com\"]\n\n[hooks]\nruntime = \"x.sh\"\n";
        std::fs::write(&path, text).unwrap();
        let saved = save_rule(&path, List::Allow, &pattern("Registry.NPMjs.org")).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            "# my project\ncpus = 4  # enough\n\n[network]\n# registries we use\nallow = [\n  \"pypi.org\",   # python\n  \"files.pythonhosted.org\",  # its files\n  \"registry.npmjs.org\",\n]\ndeny = [\"gist.github.com\"]\n\n[hooks]\nruntime = \"x.sh\"\n"
        );
        assert_eq!(saved, Saved { path: path.clone(), line: 9, existed: false, removed: 1 });
        assert_eq!(saved.source(), format!("{}:9", path.display()));

        // Again: nothing changes, the line is the existing entry's.
        let again = save_rule(&path, List::Allow, &pattern("registry.npmjs.org")).unwrap();
        assert_eq!((again.line, again.existed), (9, true));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), after);

        // Into a one-line array, and the other list.
        let denied = save_rule(&path, List::Deny, &pattern("pypi.org")).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            "# my project\ncpus = 4  # enough\n\n[network]\n# registries we use\nallow = [\n  \"files.pythonhosted.org\",  # its files\n  \"registry.npmjs.org\",\n]\ndeny = [\"gist.github.com\", \"pypi.org\"]\n\n[hooks]\nruntime = \"x.sh\"\n"
        );
        assert_eq!((denied.line, denied.removed), (10, 1));
    }

    #[test]
    fn a_missing_file_or_table_is_made_and_a_broken_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hutch.toml");
        let saved = save_rule(&path, List::Allow, &pattern("tcp://github.com:22")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[network]\nallow = [\"tcp://github.com:22\"]\n");
        assert_eq!(saved.line, 2);

        std::fs::write(&path, "cpus = 2\n").unwrap();
        save_rule(&path, List::Deny, &pattern("example.com")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "cpus = 2\n\n[network]\ndeny = [\"example.com\"]\n");

        std::fs::write(&path, "cpus = [\n").unwrap();
        let err = save_rule(&path, List::Allow, &pattern("example.com")).unwrap_err().to_string();
        assert!(err.contains("left as it is"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "cpus = [\n");
        std::fs::write(&path, "network = 3\n").unwrap();
        assert!(save_rule(&path, List::Allow, &pattern("example.com")).is_err());
    }
}
