//! Bearer-token authentication for TCP listeners.
//!
//! Unix sockets are protected by file permissions (0600) and vsock by the VM
//! boundary; TCP is reachable by anything that can route to it, so every call
//! must carry `authorization: Bearer <token>`.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Status};

/// Why the token could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("token file {0} is empty: put a random secret in it (e.g. `openssl rand -hex 32 > FILE`)")]
    Empty(String),
}

/// A loaded token and the check every TCP call goes through.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Arc<Vec<u8>>,
}

impl TokenCheck {
    /// Reads the token from `path` (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read { path: path.display().to_string(), source })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty(path.display().to_string()));
        }
        Ok(Self { expected: Arc::new(format!("Bearer {token}").into_bytes()) })
    }

    /// The tonic interceptor: lets the call through only with the right token.
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let given = request.metadata().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
        if constant_time_eq(given, &self.expected) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or wrong bearer token: pass the agent's token (hutch --token-file)"))
        }
    }
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens_exactly() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
        assert!(!constant_time_eq(b"", b"Bearer abc"));
    }
}
