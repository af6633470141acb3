//! Byte counts as people write them on command lines and in configuration
//! files: `4194304`, `512K`, `4M`, `20G`, `1T` (powers of 1024, an optional
//! `iB` or `B` after the letter: `512MiB`, `2 TB`), for the CLI, the
//! configuration and the agent's flags alike.

/// Parses a byte count; zero is refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let not_a_size = || format!("{text:?} is not a size (e.g. 4194304, 512K, 4M, 20G)");
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| not_a_size())?;
    let unit = unit.trim_start();
    let unit = unit.strip_suffix("iB").or_else(|| unit.strip_suffix('B')).unwrap_or(unit);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(not_a_size()),
    };
    number.checked_mul(1 << shift).filter(|n| *n > 0).ok_or_else(|| format!("{text:?} must be more than zero and less than 16 EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2 TB"), Ok(2 << 40));
        for bad in ["", "0", "M", "-1", "1.5M", "20X", "-1G", "99999999999G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
