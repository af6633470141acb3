//! The docs and the programs agree. The README and `docs/` are the user's
//! reference, so a subcommand, flag, `cargo xtask` task or environment
//! variable added without its documentation, a subcommand renamed under the
//! docs' feet, or a link to a heading that moved, fails here — checked
//! against the real binaries' `--help` and the sources' own reads of the
//! environment, not against a list kept by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// README.md and every `docs/*.md`, by path relative to the root.
fn documents() -> BTreeMap<PathBuf, String> {
    let root = root();
    let mut docs = BTreeMap::new();
    docs.insert(PathBuf::from("README.md"), std::fs::read_to_string(root.join("README.md")).expect("README.md"));
    for entry in std::fs::read_dir(root.join("docs")).expect("a docs/ folder") {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).expect("read a doc");
            docs.insert(path.strip_prefix(&root).expect("under the root").to_path_buf(), text);
        }
    }
    docs
}

/// The `xtask` binary, built beside `hutch` by `hutch_tests::binaries`.
fn xtask() -> PathBuf {
    hutch_tests::binaries().hutch.with_file_name("xtask")
}

/// `program ARGS… --help`, which must succeed.
fn help(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).arg("--help").output().expect("run --help");
    assert!(out.status.success(), "{} {args:?} --help failed: {}", program.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands a help text lists under `Commands:` (clap indents their
/// names by two spaces; wrapped descriptions are indented further), without
/// clap's own `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim_end() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The long flags (`--name`) a help text documents.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .flat_map(|line| line.split(|c: char| c.is_whitespace() || c == ',').take_while(|t| t.starts_with('-') || t.is_empty()))
        .filter(|token| token.starts_with("--"))
        .map(|token| {
            let end = token[2..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).map_or(token.len(), |at| at + 2);
            token[..end].to_owned()
        })
        .filter(|flag| flag.len() > 2)
        .collect()
}

/// The variables a help text says a flag reads (`[env: HUTCH_ADDR=]`).
fn env_vars(help: &str) -> BTreeSet<String> {
    help.split("[env: ").skip(1).filter_map(|rest| rest.split('=').next()).map(str::to_owned).collect()
}

/// Whether `text` names `word` as a whole (not as the start of a longer
/// flag or name: `--no-heavy` does not name `--no`).
fn names(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let next = text[at + word.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// Every visible subcommand path: `["up"]`, …, `["agent", "install"]`.
fn command_paths() -> Vec<Vec<String>> {
    let hutch = &hutch_tests::binaries().hutch;
    let mut paths = Vec::new();
    for name in subcommands(&help(hutch, &[])) {
        let nested = subcommands(&help(hutch, &[&name]));
        if nested.is_empty() {
            paths.push(vec![name]);
        } else {
            paths.extend(nested.into_iter().map(|sub| vec![name.clone(), sub]));
        }
    }
    assert!(paths.len() > 20 && paths.iter().any(|p| p == &["exec"]), "could not read hutch's subcommands: {paths:?}");
    paths
}

#[test]
fn every_subcommand_has_a_section() {
    let docs = documents();
    let headings: Vec<&str> = docs.values().flat_map(|text| text.lines()).filter(|line| line.starts_with('#')).collect();
    let missing: Vec<String> = command_paths()
        .iter()
        .map(|path| format!("`hutch {}", path.join(" ")))
        .filter(|wanted| !headings.iter().any(|heading| names(heading, wanted)))
        .collect();
    assert!(missing.is_empty(), "subcommands without a heading naming them in README.md or docs/: {missing:?}");
}

#[test]
fn every_flag_task_and_variable_is_documented() {
    let docs = documents();
    let all: String = docs.values().cloned().collect::<Vec<_>>().join("\n");
    let binaries = hutch_tests::binaries();
    let mut missing = Vec::new();

    for path in command_paths() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&binaries.hutch, &args);
        for flag in long_flags(&text) {
            if !names(&all, &flag) {
                missing.push(format!("hutch {}: {flag}", path.join(" ")));
            }
        }
        for var in env_vars(&text) {
            if !names(&all, &var) {
                missing.push(format!("hutch {}: {var}", path.join(" ")));
            }
        }
    }
    for flag in long_flags(&help(&binaries.agent, &[])) {
        if !names(&all, &flag) {
            missing.push(format!("hutch-agent: {flag}"));
        }
    }
    let tasks = subcommands(&help(&xtask(), &[]));
    assert!(tasks.iter().any(|t| t == "e2e"), "could not read xtask's tasks: {tasks:?}");
    for task in tasks {
        if !names(&all, &format!("cargo xtask {task}")) {
            missing.push(format!("cargo xtask {task}"));
        }
        for flag in long_flags(&help(&xtask(), &[&task])) {
            if !names(&all, &flag) {
                missing.push(format!("cargo xtask {task}: {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "not named anywhere in README.md or docs/: {missing:?}");
}

/// Every `HUTCH_*` variable the sources read, and the file that reads it.
fn variables_read() -> BTreeMap<String, PathBuf> {
    const READS: [&str; 4] = ["var(\"HUTCH_", "var_os(\"HUTCH_", "from_env(\"HUTCH_", "env = \"HUTCH_"];
    let root = root();
    let mut found = BTreeMap::new();
    let mut folders: Vec<PathBuf> =
        ["host/src", "guest-agent/src", "proto/src", "xtask/src", "tests/src", "tests/tests"].iter().map(|f| root.join(f)).collect();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read a source folder") {
            let path = entry.expect("source entry").path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            for read in READS {
                for (at, _) in text.match_indices(read) {
                    let name_at = at + read.len() - "HUTCH_".len();
                    let name: String =
                        text[name_at..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
                    found.entry(name).or_insert_with(|| path.strip_prefix(&root).unwrap_or(&path).to_path_buf());
                }
            }
        }
    }
    assert!(found.contains_key("HUTCH_STATE_DIR"), "could not find the sources' variables: {found:?}");
    found
}

#[test]
fn every_variable_the_sources_read_is_documented() {
    let all: String = documents().into_values().collect::<Vec<_>>().join("\n");
    let missing: Vec<String> = variables_read()
        .into_iter()
        .filter(|(name, _)| !names(&all, name))
        .map(|(name, file)| format!("{name} (read in {})", file.display()))
        .collect();
    assert!(missing.is_empty(), "environment variables not named in README.md or docs/: {missing:?}");
}

/// The words that follow `hutch` as a command in `text`: in code spans and
/// code blocks (not in prose, where "hutch" is the tool's name), with shell
/// comments left out.
fn commands_named(text: &str) -> Vec<Vec<String>> {
    let mut code = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            // A shell comment: `#` at the start or after a space.
            let end = line
                .match_indices('#')
                .find(|(at, _)| *at == 0 || line[..*at].ends_with(char::is_whitespace))
                .map_or(line.len(), |(at, _)| at);
            code.push(line[..end].to_owned());
        } else {
            code.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    let mut named = Vec::new();
    for snippet in code {
        let words: Vec<&str> =
            snippet.split(|c: char| c.is_whitespace() || c == '|' || c == '(' || c == ';').filter(|w| !w.is_empty()).collect();
        for (at, word) in words.iter().enumerate() {
            if *word != "hutch" {
                continue;
            }
            let path: Vec<String> = words[at + 1..]
                .iter()
                .take(2)
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-'))
                .map(|w| (*w).to_owned())
                .collect();
            if !path.is_empty() {
                named.push(path);
            }
        }
    }
    named
}

#[test]
fn the_docs_name_no_subcommand_that_does_not_exist() {
    let hutch = &hutch_tests::binaries().hutch;
    let visible = subcommands(&help(hutch, &[]));
    let mut exists: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut wrong = BTreeSet::new();
    for (file, text) in documents() {
        for path in commands_named(&text) {
            let first = &path[0];
            let nested = match exists.get(first) {
                Some(nested) => nested.clone(),
                None => {
                    // Hidden subcommands (`hutch mux`, `hutch log`) exist too: ask the binary.
                    let known = visible.contains(first)
                        || Command::new(hutch).args([first.as_str(), "--help"]).output().is_ok_and(|o| o.status.success());
                    if !known {
                        wrong.insert(format!("{}: hutch {first}", file.display()));
                        continue;
                    }
                    let nested = subcommands(&help(hutch, &[first]));
                    exists.insert(first.clone(), nested.clone());
                    nested
                }
            };
            // A second word is a subcommand only where the first has some
            // (`hutch agent install`); elsewhere it is an argument (`hutch rm web`).
            if let Some(second) = path.get(1).filter(|_| !nested.is_empty())
                && !nested.contains(second)
            {
                wrong.insert(format!("{}: hutch {first} {second}", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "the docs name subcommands hutch does not have: {wrong:?}");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a document's headings (repeated headings get `-1`, `-2`…).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = anchor(line.trim_start_matches('#'));
        let count = seen.entry(base.clone()).or_insert(0);
        out.insert(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
        *count += 1;
    }
    out
}

#[test]
fn relative_links_resolve() {
    let root = root();
    let docs = documents();
    let mut broken = Vec::new();
    for (file, text) in &docs {
        for (at, _) in text.match_indices("](") {
            let Some(target) = text[at + 2..].split(')').next() else { continue };
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() { file.clone() } else { file.parent().unwrap_or(Path::new("")).join(path) };
            let Ok(resolved) = root.join(&linked).canonicalize() else {
                broken.push(format!("{}: {target} (no such file)", file.display()));
                continue;
            };
            if fragment.is_empty() {
                continue;
            }
            let relative = resolved.strip_prefix(root.canonicalize().expect("root")).map(Path::to_path_buf).unwrap_or(resolved);
            match docs.get(&relative) {
                Some(linked_text) if anchors(linked_text).contains(fragment) => {}
                Some(_) => broken.push(format!("{}: {target} (no such heading)", file.display())),
                None => broken.push(format!("{}: {target} (anchor into a file that is not a doc)", file.display())),
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn the_readme_stays_short() {
    let lines = std::fs::read_to_string(root().join("README.md")).expect("README.md").lines().count();
    assert!(lines <= 350, "README.md has {lines} lines: move the detail into docs/ (the README is read in ten minutes)");
}
