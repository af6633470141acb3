//! The image's unprivileged user takes the host user's uid and gid at boot,
//! so what it writes in the shared project belongs to the host user, and one
//! image serves any host user. Rewrites its lines of /etc/passwd and
//! /etc/group, and re-owns its home when the ids changed (the first boot of
//! a VM; the overlay keeps it for the next).

use std::path::Path;

/// The user commands run as when the host user is not root.
pub const USER: &str = "hutch";

/// Gives `name` the ids `uid`/`gid`.
pub fn adopt(name: &str, uid: u32, gid: u32) -> std::io::Result<()> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let (passwd, old) = with_ids(&passwd, name, &[(2, uid), (3, gid)])
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no user {name} in /etc/passwd")))?;
    let Some((old_uid, old_gid, home)) = old else { return Ok(()) };
    let group = std::fs::read_to_string("/etc/group")?;
    if let Some((group, _)) = with_ids(&group, name, &[(2, gid)]) {
        replace("/etc/group", &group)?;
    }
    replace("/etc/passwd", &passwd)?;
    if !home.is_empty() {
        chown_tree(Path::new(&home), (old_uid, old_gid), (uid, gid));
    }
    Ok(())
}

/// `text` (passwd or group lines) with the numeric `fields` of `name`'s line
/// set; `None` when no line is `name`'s. The second value is the line's old
/// (uid, gid, home) when anything changed (`None`: already so).
type Rewritten = (String, Option<(u32, u32, String)>);
fn with_ids(text: &str, name: &str, fields: &[(usize, u32)]) -> Option<Rewritten> {
    let mut found = false;
    let mut old = None;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut parts: Vec<String> = line.split(':').map(str::to_owned).collect();
            if parts.first().map(String::as_str) != Some(name) || parts.len() < 4 {
                return line.to_owned();
            }
            found = true;
            let number = |parts: &[String], i: usize| parts.get(i).and_then(|p| p.parse::<u32>().ok()).unwrap_or(u32::MAX);
            let before = (number(&parts, 2), number(&parts, 3), parts.get(5).cloned().unwrap_or_default());
            for &(index, value) in fields {
                if let Some(part) = parts.get_mut(index) {
                    *part = value.to_string();
                }
            }
            let after = (number(&parts, 2), number(&parts, 3));
            if (before.0, before.1) != after {
                old = Some(before);
            }
            parts.join(":")
        })
        .collect();
    found.then(|| (lines.join("\n") + "\n", old))
}

/// Writes `path` through a temporary file and a rename, keeping its mode.
fn replace(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.hutch-new");
    std::fs::write(&tmp, text)?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    std::fs::rename(&tmp, path)
}

/// Re-owns what `old` owned under `root` (symlinks themselves, never followed;
/// other owners, e.g. root's files, stay).
fn chown_tree(root: &Path, old: (u32, u32), new: (u32, u32)) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = root.symlink_metadata() else { return };
    let uid = (meta.uid() == old.0).then_some(new.0);
    let gid = (meta.gid() == old.1).then_some(new.1);
    if uid.is_some() || gid.is_some() {
        let _ = std::os::unix::fs::lchown(root, uid, gid);
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            chown_tree(&entry.path(), old, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_line_changes() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nhutch:x:1000:1000:hutch guest user:/home/hutch:/bin/bash\n";
        let (text, old) = with_ids(passwd, "hutch", &[(2, 501), (3, 20)]).unwrap();
        assert_eq!(text, "root:x:0:0:root:/root:/bin/bash\nhutch:x:501:20:hutch guest user:/home/hutch:/bin/bash\n");
        assert_eq!(old, Some((1000, 1000, "/home/hutch".to_owned())));
        let (again, old) = with_ids(&text, "hutch", &[(2, 501), (3, 20)]).unwrap();
        assert_eq!((again.as_str(), old), (text.as_str(), None));
        assert!(with_ids(passwd, "hutc", &[(2, 1)]).is_none());
        let (group, _) = with_ids("hutch:x:1000:\nsudo:x:27:hutch\n", "hutch", &[(2, 20)]).unwrap();
        assert_eq!(group, "hutch:x:20:\nsudo:x:27:hutch\n");
    }

    #[test]
    fn a_home_changes_owner_where_the_user_owned_it() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return; // chown to other ids needs root
        }
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("d")).unwrap();
        std::fs::write(home.path().join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", home.path().join("link")).unwrap();
        std::os::unix::fs::lchown(home.path().join("d/f"), Some(4000), Some(4000)).unwrap();
        std::os::unix::fs::lchown(home.path().join("link"), Some(4000), Some(4000)).unwrap();
        chown_tree(home.path(), (4000, 4000), (4001, 4002));
        let owner = |p: &str| {
            let m = home.path().join(p).symlink_metadata().unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner("d/f"), (4001, 4002));
        assert_eq!(owner("link"), (4001, 4002));
        assert_eq!(owner("d"), (0, 0), "root's folder stays root's");
        assert_eq!(std::fs::metadata("/etc/passwd").unwrap().uid(), 0, "a symlink is never followed");
    }
}
