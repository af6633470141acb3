//! Value parsers for flags: durations, `K=V` pairs, folder names.

pub use crate::duration::parse as parse_duration;

/// An absolute guest folder.
pub(crate) fn parse_guest_dir(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path"));
    }
    Ok(s.to_owned())
}

/// A single directory name (no `/`, not `.` or `..`).
pub(crate) fn parse_dir_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err(format!("{s:?} is not a directory name"));
    }
    Ok(s.to_owned())
}

/// Parses `K=V`, or `K` alone to pass the local value of K.
pub(crate) fn parse_env(s: &str) -> Result<(String, String), String> {
    let (key, value) = match s.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => {
            let value = std::env::var(s).map_err(|_| format!("{s} is not set here; use {s}=VALUE"))?;
            (s.to_owned(), value)
        }
    };
    if key.is_empty() {
        return Err("the variable name is empty".into());
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), String::new()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("HUTCH_SURELY_UNSET_VAR").is_err());
    }
}
