//! `[image] node`: which Node.js release the default image carries. A major
//! version (`"22"`) means that line's release hutch pins, or the newest of
//! the line when hutch pins none; a full version (`"22.23.5"`) means exactly
//! that release. `cargo xtask image` turns it into a verified download.

use std::fmt;

/// The release line the default image carries unless told otherwise: the
/// current Node.js LTS.
pub const DEFAULT_MAJOR: u32 = 22;
/// The oldest line accepted: the image's npm 10 needs Node 18.17 or newer.
pub const OLDEST_MAJOR: u32 = 18;

/// A Node.js version as the configuration names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeVersion {
    /// A release line (`"22"`).
    Major(u32),
    /// One release (`"22.23.5"`).
    Exact(u32, u32, u32),
}

impl NodeVersion {
    /// Parses `"22"`, `"22.23.5"` (a leading `v` is allowed, as `node
    /// --version` prints it); anything else says what is expected.
    pub fn parse(text: &str) -> Result<NodeVersion, String> {
        let bad =
            || format!("node = {text:?} is not a Node.js version: use a major version such as \"22\" or a release such as \"22.23.5\"");
        let digits = text.strip_prefix('v').unwrap_or(text);
        let parts: Vec<&str> = digits.split('.').collect();
        let number = |part: &str| {
            if part.is_empty() || part.len() > 6 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u32>().map_err(|_| bad())
        };
        let version = match parts.as_slice() {
            [major] => NodeVersion::Major(number(major)?),
            [major, minor, patch] => NodeVersion::Exact(number(major)?, number(minor)?, number(patch)?),
            _ => return Err(bad()),
        };
        if version.major() < OLDEST_MAJOR {
            return Err(format!("node = {text:?}: the image's npm needs Node.js {OLDEST_MAJOR} or newer (the current LTS is 22)"));
        }
        Ok(version)
    }

    /// Its release line.
    pub fn major(self) -> u32 {
        match self {
            NodeVersion::Major(major) | NodeVersion::Exact(major, _, _) => major,
        }
    }
}

impl fmt::Display for NodeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeVersion::Major(major) => write!(f, "{major}"),
            NodeVersion::Exact(major, minor, patch) => write!(f, "{major}.{minor}.{patch}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_and_releases_parse_and_the_rest_is_refused() {
        assert_eq!(NodeVersion::parse("22"), Ok(NodeVersion::Major(22)));
        assert_eq!(NodeVersion::parse("v24.1.0"), Ok(NodeVersion::Exact(24, 1, 0)));
        assert_eq!(NodeVersion::parse("22.23.5").map(|v| v.to_string()), Ok("22.23.5".to_owned()));
        for bad in ["", "lts", "22.1", "22.1.0.1", "22.x", "-22", "22.1.0-rc.1", " 22", "99999999999"] {
            let err = NodeVersion::parse(bad).unwrap_err();
            assert!(err.contains("not a Node.js version"), "{bad:?}: {err}");
        }
        assert!(NodeVersion::parse("16").unwrap_err().contains("Node.js 18 or newer"));
    }
}
