//! Parsing Linux's `/proc/self/mountinfo`, shared by the agent (is this
//! already mounted?) and the host (`hutch doctor` reads the guest's table).

use std::path::PathBuf;

/// The mount points listed in a mountinfo table (field 5, octal-unescaped).
pub fn mount_points(table: &str) -> Vec<PathBuf> {
    table.lines().filter_map(|line| line.split(' ').nth(4)).map(|field| PathBuf::from(unescape(field))).collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes_mount_points() {
        let table = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                     40 30 0:35 / /home/me/my\\040project rw - 9p hutch-ws rw\n";
        assert_eq!(mount_points(table), [PathBuf::from("/proc"), PathBuf::from("/home/me/my project")]);
    }
}
