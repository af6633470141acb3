//! Where a secret may be sent besides its hosts: HTTP methods and path
//! prefixes (`methods = ["GET"]`, `paths = ["/v1/messages"]`), checked by
//! the proxy on each intercepted request before the placeholder is swapped.
//!
//! A path scope only means something if the server reads the path as the
//! proxy does, so a request whose path a server could resolve to somewhere
//! else (dot segments, percent-encoded `.` `/` `\`, backslashes) is refused
//! for a path-scoped secret rather than compared: `/v1/../admin` starts with
//! `/v1/` and is `/admin` to most servers.

/// `text` as a method a secret may be sent with: an HTTP token, in upper case.
pub fn method(text: &str) -> Result<String, String> {
    let method = text.trim().to_ascii_uppercase();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || method.len() > 32 || !method.bytes().all(token) {
        return Err(format!("{text:?} is not an HTTP method (GET, POST, …)"));
    }
    Ok(method)
}

/// `text` as a path prefix: absolute, no query, nothing a server could read
/// otherwise (see the module docs).
pub fn path_prefix(text: &str) -> Result<String, String> {
    let prefix = text.trim();
    if !prefix.starts_with('/') {
        return Err(format!("path {text:?} does not start with /"));
    }
    if prefix.contains(['?', '#']) || ambiguous(prefix) {
        return Err(format!("path {text:?} holds a query, a fragment, a dot segment or an encoded separator: give the plain path prefix"));
    }
    Ok(prefix.to_owned())
}

/// Whether a server could resolve `path` to another one than it reads as:
/// `.`/`..` segments, backslashes, or `.`, `/`, `\` percent-encoded.
pub fn ambiguous(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.contains('\\')
        || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        || path.split('/').any(|segment| segment == "." || segment == "..")
}

/// Whether `path` lies under `prefix`: equal, or continuing it at a `/`
/// (`/v1` covers `/v1` and `/v1/x`, not `/v10`).
pub fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_tokens_in_upper_case() {
        assert_eq!(method(" get ").unwrap(), "GET");
        assert!(method("GET /x").is_err() && method("").is_err());
    }

    #[test]
    fn prefixes_cover_whole_segments_and_refuse_what_a_server_could_read_otherwise() {
        assert!(under("/v1", "/v1") && under("/v1/messages", "/v1") && under("/v1/messages", "/v1/"));
        assert!(!under("/v10", "/v1") && !under("/v", "/v1") && !under("/V1/x", "/v1"));
        for path in ["/v1/../admin", "/v1/./x", "/v1/%2e%2e/admin", "/v1%2Fadmin", "/v1\\..\\admin", "/v1/.."] {
            assert!(ambiguous(path), "{path}");
        }
        assert!(!ambiguous("/v1/messages.json") && !ambiguous("/v1/a..b"));
        assert!(path_prefix("v1").is_err() && path_prefix("/v1?x").is_err() && path_prefix("/a/../b").is_err());
        assert_eq!(path_prefix(" /v1/ ").unwrap(), "/v1/");
    }
}
