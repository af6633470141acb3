//! Byte counts as people write them on command lines: `4194304`, `512K`,
//! `4M`, `1G` (powers of 1024), for both the CLI and the agent's flags.

/// Parses a byte count; zero is refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, scale) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let number: u64 = number.trim().parse().map_err(|_| format!("{s:?} is not a size (e.g. 4194304, 512K, 4M, 1G)"))?;
    number.checked_mul(scale).filter(|n| *n > 0).ok_or_else(|| format!("{s:?} must be more than zero and less than 16 EiB"))
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
        for bad in ["", "0", "M", "-1", "1.5M", "4T", "99999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
