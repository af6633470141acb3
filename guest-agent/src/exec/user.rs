//! The user commands run as. The agent itself runs as root (it mounts the
//! workspace and heavy dirs); with `--exec-user NAME` (hutch's init passes
//! the image's user when the host user is not root) every command runs as
//! that user instead, with its home, so what it writes in the shared project
//! belongs to the host user whose ids it has.

use std::path::PathBuf;
use std::sync::OnceLock;

/// A user from /etc/passwd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home folder (`HOME`).
    pub home: PathBuf,
    /// Login shell (`SHELL`).
    pub shell: String,
}

static EXEC_USER: OnceLock<ExecUser> = OnceLock::new();

/// Makes every later command run as `user` (set once, at start-up).
pub fn set(user: ExecUser) {
    let _ = EXEC_USER.set(user);
}

/// The user commands run as, if not the agent's own.
pub fn get() -> Option<&'static ExecUser> {
    EXEC_USER.get()
}

impl ExecUser {
    /// Looks `name` up in /etc/passwd (read directly: a static agent has no
    /// NSS modules to load).
    pub fn lookup(name: &str) -> std::io::Result<ExecUser> {
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        Self::parse(&passwd, name)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no user {name:?} in /etc/passwd")))
    }

    fn parse(passwd: &str, name: &str) -> Option<ExecUser> {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 || fields[0] != name {
                return None;
            }
            Some(ExecUser {
                name: name.to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: PathBuf::from(fields[5]),
                shell: fields[6].to_owned(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_users_line() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nhutch:x:501:20:hutch guest user:/home/hutch:/bin/bash\nbroken:x:y\n";
        let user = ExecUser::parse(passwd, "hutch").unwrap();
        assert_eq!((user.uid, user.gid, user.home.to_str(), user.shell.as_str()), (501, 20, Some("/home/hutch"), "/bin/bash"));
        assert!(ExecUser::parse(passwd, "broken").is_none());
        assert!(ExecUser::parse(passwd, "nobody").is_none());
    }
}
