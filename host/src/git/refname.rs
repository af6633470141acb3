//! Ref names and object ids the guest advertises, checked before the host
//! writes or shows anything named after them.
//!
//! git's own rules (`git check-ref-format`), plus hutch's: only branches and
//! tags come back, names are printable ASCII (a look-alike Unicode name
//! could pass for the user's own branch in a report), at most
//! [`MAX_NAME_BYTES`] long, and never `HEAD`.

/// The longest branch or tag name taken from the guest.
pub const MAX_NAME_BYTES: usize = 255;

/// What a guest ref is, once its name checked out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuestRef {
    /// `refs/heads/NAME`.
    Branch(String),
    /// `refs/tags/NAME`.
    Tag(String),
}

impl GuestRef {
    /// Parses a full ref name from the guest; `None` for refs hutch does not
    /// take (remotes, notes, stash…); `Err` with the reason for a branch or
    /// tag whose name is refused.
    pub fn parse(full: &str) -> Option<Result<GuestRef, String>> {
        let (make, name): (fn(String) -> GuestRef, &str) = if let Some(name) = full.strip_prefix("refs/heads/") {
            (GuestRef::Branch, name)
        } else if let Some(name) = full.strip_prefix("refs/tags/") {
            (GuestRef::Tag, name)
        } else {
            return None;
        };
        Some(check(name).map(|()| make(name.to_owned())))
    }

    /// The full ref name on the host.
    pub fn full(&self) -> String {
        match self {
            GuestRef::Branch(name) => format!("refs/heads/{name}"),
            GuestRef::Tag(name) => format!("refs/tags/{name}"),
        }
    }

    /// Where hutch keeps a refused copy: `refs/hutch/<vm>/heads/NAME`.
    pub fn kept(&self, vm: &str) -> String {
        match self {
            GuestRef::Branch(name) => format!("refs/hutch/{vm}/heads/{name}"),
            GuestRef::Tag(name) => format!("refs/hutch/{vm}/tags/{name}"),
        }
    }

    /// The short name, for reports.
    pub fn short(&self) -> String {
        match self {
            GuestRef::Branch(name) => name.clone(),
            GuestRef::Tag(name) => format!("tag {name}"),
        }
    }
}

/// git's rules for the part after `refs/heads/` or `refs/tags/`, and hutch's.
fn check(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("a name of {} bytes", name.len()));
    }
    if name == "HEAD" || name == "@" {
        return Err("a name git reserves".into());
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic() || "~^:?*[\\".contains(*c)) {
        return Err(format!("a name with {:?}, which branch names may not hold", c));
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") || name.ends_with('/') || name.ends_with('.') {
        return Err("a name git refuses (`..`, `@{`, `//`, or a trailing `/` or `.`)".into());
    }
    if name.split('/').any(|part| part.starts_with('.') || part.ends_with(".lock")) {
        return Err("a name git refuses (a part starting with `.` or ending with `.lock`)".into());
    }
    Ok(())
}

/// Whether `text` is an object id of `format` ("sha1": 40 hex digits,
/// "sha256": 64), in git's lower case.
pub fn is_oid(text: &str, format: &str) -> bool {
    let len = if format == "sha256" { 64 } else { 40 };
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_and_tags_pass_and_everything_odd_is_refused() {
        assert_eq!(GuestRef::parse("refs/heads/feature/x-1"), Some(Ok(GuestRef::Branch("feature/x-1".into()))));
        assert_eq!(GuestRef::parse("refs/tags/v1.2"), Some(Ok(GuestRef::Tag("v1.2".into()))));
        assert_eq!(GuestRef::parse("refs/remotes/origin/main"), None);
        assert_eq!(GuestRef::parse("refs/stash"), None);
        for bad in ["a..b", "a/.b", "x.lock", "a b", "a\x1b[0m", "HEAD", "a~1", "tr/", "m\u{430}in", "a@{1}", ""] {
            assert!(matches!(GuestRef::parse(&format!("refs/heads/{bad}")), Some(Err(_))), "{bad:?}");
        }
        assert!(matches!(GuestRef::parse(&format!("refs/heads/{}", "a".repeat(300))), Some(Err(_))));
        assert_eq!(GuestRef::Branch("x".into()).kept("vm"), "refs/hutch/vm/heads/x");
    }

    #[test]
    fn object_ids_are_lower_case_hex_of_the_format() {
        assert!(is_oid(&"a".repeat(40), "sha1"));
        assert!(!is_oid(&"A".repeat(40), "sha1"));
        assert!(is_oid(&"0".repeat(64), "sha256"));
        assert!(!is_oid(&"0".repeat(64), "sha1"));
    }
}
