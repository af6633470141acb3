//! Extra programs for the guest, copied from the build machine with the
//! shared libraries they need (as `ldd` lists them) and the dynamic loader.
//! busybox covers the shell and coreutils; git is what tests and users of
//! `--ro-git` snapshots need beyond that.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cpio::Archive;
use crate::workspace::Result;

/// Programs added when the build machine has them.
pub const EXTRA: &[&str] = &["git"];

/// Adds each of [`EXTRA`] found in PATH, and the libraries they load.
/// Returns the names of the programs added.
pub fn add(archive: &mut Archive) -> Result<Vec<String>> {
    let mut added = Vec::new();
    let mut libraries = BTreeSet::new();
    for name in EXTRA {
        let Some(program) = which(name) else { continue };
        libraries.extend(shared_libraries(&program)?);
        archive.file(&format!("usr/bin/{name}"), 0o755, &std::fs::read(&program)?);
        added.push((*name).to_owned());
    }
    let mut dirs = BTreeSet::new();
    for library in &libraries {
        for dir in library.ancestors().skip(1).filter(|d| d.as_os_str().len() > 1) {
            dirs.insert(dir.to_path_buf());
        }
    }
    for dir in &dirs {
        let dir = dir.strip_prefix("/").unwrap_or(dir).display().to_string();
        if dir != "usr" && dir != "usr/bin" && dir != "lib" {
            archive.dir(&dir, 0o755);
        }
    }
    for library in &libraries {
        let inside = library.strip_prefix("/").unwrap_or(library).display().to_string();
        archive.file(&inside, 0o755, &std::fs::read(library)?);
    }
    Ok(added)
}

/// The files a dynamic executable loads, from `ldd` (the loader included).
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(program).output()?;
    if !out.status.success() {
        return Ok(Vec::new()); // static: nothing to add
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file())
}
