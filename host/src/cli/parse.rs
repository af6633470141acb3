//! Value parsers for flags: durations, `K=V` pairs, folder names.

use std::time::Duration;

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

/// Parses `30`, `1.5`, `500ms`, `30s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 30, 1.5, 500ms, 2m)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use ms, s, m or h")),
    };
    let secs = number * scale;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), String::new()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("HUTCH_SURELY_UNSET_VAR").is_err());
    }
}
