//! No module of hutch or of its agent imports a module that imports it
//! back, directly or through others (issue 27).
//!
//! A module is a source file. File A depends on file B when A names an item
//! that B defines: through `use`, or a path in code (`crate::x::f()`,
//! `super::y::T`, `z::g()` after `use crate::z`, `kid::h()` for a child
//! module). A re-export (`pub use`, including globs) is followed to the
//! file that defines the item, so `crate::config::ConfigError` is a
//! dependency on `config/error.rs`, not on `config/mod.rs`. Only one kind of
//! edge is left out: a file naming its own ancestors (`super::Error` in a
//! part of a folder module), the shared definitions of the module it
//! belongs to. A folder's `mod.rs` naming its parts does count. Test
//! modules (`#[cfg(test)]`) are left out. The sources are tokenized (by
//! proc-macro2), so comments, strings and doc text never count, and paths
//! inside macro calls do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// A module's path inside its crate (`["net", "daemon"]`; the root is `[]`).
type ModPath = Vec<String>;

/// One leaf of a `use` tree: the path, and the name it binds.
type UseLeaf = (Vec<String>, String);

/// One crate's files.
struct Crate {
    files: BTreeMap<ModPath, PathBuf>,
    /// Per file: names it re-exports, with the path each stands for.
    reexports: BTreeMap<ModPath, BTreeMap<String, (ModPath, Vec<String>)>>,
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: ModPath = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's top-level tokens, with `#[cfg(test)]` items left out.
fn tokens(file: &Path) -> Vec<TokenTree> {
    let text = std::fs::read_to_string(file).expect("read source");
    let stream = TokenStream::from_str(&text).unwrap_or_else(|e| panic!("{} does not tokenize: {e:?}", file.display()));
    without_tests(stream.into_iter().collect())
}

fn is_cfg_test(group: &TokenTree) -> bool {
    let TokenTree::Group(g) = group else { return false };
    g.delimiter() == Delimiter::Bracket && g.stream().to_string().replace(' ', "") == "cfg(test)"
}

fn without_tests(trees: Vec<TokenTree>) -> Vec<TokenTree> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < trees.len() {
        if matches!(&trees[i], TokenTree::Punct(p) if p.as_char() == '#') && trees.get(i + 1).is_some_and(is_cfg_test) {
            // Skip the item: up to its `;` or its braces.
            i += 2;
            while i < trees.len() {
                match &trees[i] {
                    TokenTree::Punct(p) if p.as_char() == ';' => break,
                    TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => break,
                    _ => i += 1,
                }
            }
            i += 1;
            continue;
        }
        out.push(trees[i].clone());
        i += 1;
    }
    out
}

fn ident(tree: Option<&TokenTree>) -> Option<String> {
    match tree {
        Some(TokenTree::Ident(i)) => Some(i.to_string()),
        _ => None,
    }
}

fn is_punct(tree: Option<&TokenTree>, c: char) -> bool {
    matches!(tree, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

fn is_path_sep(trees: &[TokenTree], i: usize) -> bool {
    is_punct(trees.get(i), ':') && is_punct(trees.get(i + 1), ':')
}

/// A `use` tree's leaves: (path, the name it binds).
fn use_tree(trees: &[TokenTree], prefix: &[String], out: &mut Vec<UseLeaf>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    if is_path_sep(trees, 0) {
        i = 2;
    }
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Ident(id) => {
                path.push(id.to_string());
                i += 1;
                if is_path_sep(trees, i) {
                    i += 2;
                    continue;
                }
                let bound = match path.last().map(String::as_str) {
                    Some("self") => {
                        path.pop();
                        path.last().cloned().unwrap_or_default()
                    }
                    Some(last) => last.to_owned(),
                    None => String::new(),
                };
                if ident(trees.get(i)).as_deref() == Some("as") {
                    if let Some(alias) = ident(trees.get(i + 1)) {
                        out.push((path, alias));
                    }
                    return;
                }
                out.push((path, bound));
                return;
            }
            TokenTree::Punct(p) if p.as_char() == '*' => {
                path.push("*".into());
                out.push((path, "*".into()));
                return;
            }
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                for part in inner.split(|t| is_punct(Some(t), ',')) {
                    if !part.is_empty() {
                        use_tree(part, &path, out);
                    }
                }
                return;
            }
            _ => return,
        }
    }
}

/// The `use` declarations of a token list (not descending into items), and
/// whether each is `pub`.
fn uses(trees: &[TokenTree]) -> Vec<(bool, Vec<UseLeaf>)> {
    let mut found = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        if ident(Some(tree)).as_deref() != Some("use") {
            continue;
        }
        let public = match (i.checked_sub(1).map(|j| &trees[j]), i.checked_sub(2).map(|j| &trees[j])) {
            (Some(TokenTree::Ident(p)), _) if p == "pub" => true,
            (Some(TokenTree::Group(g)), Some(TokenTree::Ident(p))) if p == "pub" && g.delimiter() == Delimiter::Parenthesis => true,
            _ => false,
        };
        let end = trees[i + 1..].iter().position(|t| is_punct(Some(t), ';')).map_or(trees.len(), |p| i + 1 + p);
        let mut leaves = Vec::new();
        use_tree(&trees[i + 1..end], &[], &mut leaves);
        found.push((public, leaves));
    }
    found
}

/// Every path of the file (in code, in any nesting): runs of `a::b::c`.
fn paths(trees: &[TokenTree], out: &mut Vec<Vec<String>>) {
    let mut i = 0;
    while i < trees.len() {
        if let TokenTree::Group(g) = &trees[i] {
            let inner: Vec<TokenTree> = g.stream().into_iter().collect();
            paths(&without_tests(inner), out);
            i += 1;
            continue;
        }
        // `use` trees are read by `uses`, braces and all.
        if ident(trees.get(i)).as_deref() == Some("use") {
            i += trees[i..].iter().position(|t| is_punct(Some(t), ';')).unwrap_or(trees.len() - i);
            continue;
        }
        let preceded_by_sep = i >= 2 && is_path_sep(trees, i - 2);
        if let (Some(first), false) = (ident(trees.get(i)), preceded_by_sep)
            && is_path_sep(trees, i + 1)
        {
            let mut path = vec![first];
            let mut j = i + 1;
            while is_path_sep(trees, j) {
                match ident(trees.get(j + 2)) {
                    Some(next) => {
                        path.push(next);
                        j += 3;
                    }
                    None => break,
                }
            }
            out.push(path);
            i = j;
            continue;
        }
        i += 1;
    }
}

/// The names of the public items a file defines (for glob re-exports).
fn public_items(trees: &[TokenTree]) -> BTreeSet<String> {
    let kinds = ["struct", "enum", "fn", "trait", "type", "const", "static", "mod"];
    let mut names = BTreeSet::new();
    for (i, tree) in trees.iter().enumerate() {
        if ident(Some(tree)).as_deref() != Some("pub") {
            continue;
        }
        let mut j = i + 1;
        if matches!(trees.get(j), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis) {
            j += 1;
        }
        while matches!(ident(trees.get(j)).as_deref(), Some("async" | "unsafe" | "const")) && ident(trees.get(j + 1)).is_some() {
            if kinds.contains(&ident(trees.get(j)).unwrap_or_default().as_str()) && ident(trees.get(j + 1)).is_some() {
                break;
            }
            j += 1;
        }
        if let (Some(kind), Some(name)) = (ident(trees.get(j)), ident(trees.get(j + 1)))
            && kinds.contains(&kind.as_str())
        {
            names.insert(name);
        }
    }
    names
}

impl Crate {
    fn read(src: &Path, root_file: &str) -> Crate {
        let mut all = Vec::new();
        rust_files(src, &mut all);
        let files: BTreeMap<ModPath, PathBuf> = all
            .into_iter()
            .filter(|f| {
                let rel = f.strip_prefix(src).expect("under src");
                rel.components().count() > 1 || rel == Path::new(root_file) || !["lib.rs", "main.rs"].contains(&rel.to_str().unwrap_or(""))
            })
            .map(|f| (module_path(src, &f), f))
            .collect();
        let mut krate = Crate { files, reexports: BTreeMap::new() };
        let mut reexports = BTreeMap::new();
        for (module, file) in &krate.files {
            let trees = tokens(file);
            let mut mine = BTreeMap::new();
            for (public, leaves) in uses(&trees) {
                if !public {
                    continue;
                }
                for (path, bound) in leaves {
                    let Some(path) = krate.absolute(module, &path, &BTreeMap::new()) else { continue };
                    if bound == "*" {
                        let target = krate.longest_module(&path[..path.len() - 1]);
                        if let Some(file) = krate.files.get(&target) {
                            for name in public_items(&tokens(file)) {
                                let mut full = target.clone();
                                full.push(name.clone());
                                mine.entry(name).or_insert((module.clone(), full));
                            }
                        }
                    } else {
                        mine.insert(bound, (module.clone(), path));
                    }
                }
            }
            reexports.insert(module.clone(), mine);
        }
        krate.reexports = reexports;
        krate
    }

    /// `path` as seen from `module`, made absolute, when it names this crate.
    fn absolute(&self, module: &ModPath, path: &[String], aliases: &BTreeMap<String, ModPath>) -> Option<Vec<String>> {
        let first = path.first()?;
        let (mut base, rest): (Vec<String>, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (module.clone(), &path[1..]),
            "super" => {
                let mut base = module.clone();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            name => {
                if let Some(target) = aliases.get(name) {
                    (target.clone(), &path[1..])
                } else {
                    let mut child = module.clone();
                    child.push(name.to_owned());
                    if self.files.contains_key(&child) {
                        (child, &path[1..])
                    } else {
                        return None;
                    }
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn longest_module(&self, path: &[String]) -> ModPath {
        (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| self.files.contains_key(p)).unwrap_or_default()
    }

    /// The file that defines what absolute `path` names (re-exports followed).
    fn defining_file(&self, path: &[String], depth: usize) -> ModPath {
        let module = self.longest_module(path);
        if depth < 8
            && let Some(name) = path.get(module.len())
            && let Some((_, target)) = self.reexports.get(&module).and_then(|r| r.get(name))
            && target.as_slice() != path
        {
            let mut target = target.clone();
            target.extend(path[module.len() + 1..].iter().cloned());
            return self.defining_file(&target, depth + 1);
        }
        module
    }

    /// Each file's dependencies, without those on its own ancestors.
    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges = BTreeMap::new();
        for (module, file) in &self.files {
            let trees = tokens(file);
            let mut aliases = BTreeMap::new();
            let mut named = Vec::new();
            for (_, leaves) in uses(&trees) {
                for (path, bound) in leaves {
                    let Some(path) = self.absolute(module, &path, &BTreeMap::new()) else { continue };
                    if bound == "*" {
                        named.push(path[..path.len() - 1].to_vec());
                        continue;
                    }
                    if self.files.contains_key(&path) {
                        aliases.insert(bound, path.clone());
                    }
                    named.push(path);
                }
            }
            let mut found = Vec::new();
            paths(&trees, &mut found);
            named.extend(found.iter().filter_map(|p| self.absolute(module, p, &aliases)));
            let targets: BTreeSet<ModPath> =
                named.iter().map(|p| self.defining_file(p, 0)).filter(|t| t != module && !module.starts_with(t)).collect();
            edges.insert(module.clone(), targets);
        }
        edges
    }
}

/// The strongly connected components of more than one file (Tarjan).
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on: BTreeSet<ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &ModPath) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            self.on.insert(v.clone());
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.on.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(&w);
                    let done = &w == v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), found: Vec::new() };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn name(module: &ModPath) -> String {
    if module.is_empty() { "crate".into() } else { module.join("::") }
}

fn describe(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>, found: &[Vec<ModPath>]) -> String {
    let mut text = String::new();
    for component in found {
        text.push_str(&format!("cycle of {} files:\n", component.len()));
        for a in component {
            for b in edges[a].iter().filter(|b| component.contains(b)) {
                text.push_str(&format!("  {} -> {}\n", name(a), name(b)));
            }
        }
    }
    text
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn assert_acyclic(src: &str, root_file: &str) {
    let krate = Crate::read(&repo().join(src), root_file);
    assert!(krate.files.len() > 20, "{src}: too few files found ({})", krate.files.len());
    let edges = krate.edges();
    let found = cycles(&edges);
    assert!(found.is_empty(), "{src} has import cycles:\n{}", describe(&edges, &found));
}

#[test]
fn the_host_crate_has_no_import_cycles() {
    assert_acyclic("host/src", "lib.rs");
}

#[test]
fn the_agent_has_no_import_cycles() {
    assert_acyclic("guest-agent/src", "main.rs");
}

/// The check finds what it is for: a cycle through a re-export, a cycle
/// through a module alias, and none for a part that names its parent.
#[test]
fn the_check_sees_cycles_through_reexports_and_aliases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let path = src.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod fam;\n");
    // a -> b::Thing, which b re-exports from b::inner; b::inner -> a.
    write("a.rs", "use crate::b::Thing;\npub fn f() {}\n");
    write("b/mod.rs", "mod inner;\npub use inner::*;\n");
    write("b/inner.rs", "pub struct Thing;\nfn g() { crate::a::f(); }\n");
    // c -> d through an alias, d -> c in a macro call; comments and strings never count.
    write("c.rs", "use crate::d;\npub fn h() { d::k(); }\n// crate::a::f\n");
    write("d.rs", "pub fn k() { println!(\"{}\", { crate::c::h(); 1 }); let _ = \"crate::fam::x\"; }\n");
    // A part naming its parent, and a test module naming anything: no cycle.
    write("fam/mod.rs", "mod part;\npub struct Shared;\npub fn run() { part::go(); }\n");
    write("fam/part.rs", "use super::Shared;\npub fn go() {}\n#[cfg(test)]\nmod tests { use crate::fam::run; }\n");
    for i in 0..20 {
        write(&format!("pad{i}.rs"), "");
    }
    let krate = Crate::read(src, "lib.rs");
    let edges = krate.edges();
    let found = cycles(&edges);
    let text = describe(&edges, &found);
    assert_eq!(found.len(), 2, "{text}");
    assert!(text.contains("a -> b::inner") && text.contains("b::inner -> a"), "{text}");
    assert!(text.contains("c -> d") && text.contains("d -> c"), "{text}");
    assert!(!text.contains("fam"), "{text}");
}
