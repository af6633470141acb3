//! `hutch git-bridge git-upload-pack` (hidden; the command is
//! `crate::cmd::git_bridge`): the "remote" host git fetches from. Host git runs it through its `ext::` transport; it runs
//! `git upload-pack` on the guest's gitdir through an agent exec and relays
//! the bytes both ways, so the host's fetch speaks the plain git protocol to
//! the guest with no network and no SSH.
//!
//! What it relays is the guest's, so it is bounded (`crate::untrusted::limits`):
//! the ref advertisement may name at most `GIT_GUEST_REFS` refs (it is parsed
//! as pkt-lines up to its flush), everything from the guest together at most
//! [`max_bytes`], and a guest that stops sending for `GIT_FETCH_IDLE` is cut
//! off. Only `git-upload-pack`
//! is served (a fetch), never `git-receive-pack`. The guest's error output
//! is passed on escaped and cut, to host git (whose output hutch shows only
//! escaped). The protocol is version 0 (no `GIT_PROTOCOL` is passed on), so
//! the advertisement comes first and whole.
//!
//! Its parameters come from the environment hutch gives host git:
//! `HUTCH_GIT_BRIDGE_VM` (or `HUTCH_GIT_BRIDGE_ADDR` for an agent by
//! address) and `HUTCH_GIT_BRIDGE_GITDIR`, the gitdir's path in the guest.

use super::GitError;

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "git-bridge";
/// The VM whose guest to fetch from.
pub const ENV_VM: &str = "HUTCH_GIT_BRIDGE_VM";
/// Or the agent's address (an agent hutch runs no VM for).
pub const ENV_ADDR: &str = "HUTCH_GIT_BRIDGE_ADDR";
/// The gitdir in the guest.
pub const ENV_GITDIR: &str = "HUTCH_GIT_BRIDGE_GITDIR";
/// Overrides the default of `GIT_FETCH_BYTES` (a size: `8G`).
pub const ENV_MAX_BYTES: &str = "HUTCH_GIT_FETCH_MAX";

use crate::untrusted::limits::{GIT_FETCH_BYTES, GIT_GUEST_REFS};

/// The byte cap in force.
pub fn max_bytes() -> u64 {
    std::env::var(ENV_MAX_BYTES).ok().and_then(|v| hutch_proto::size::parse_size(&v).ok()).unwrap_or(GIT_FETCH_BYTES.max)
}

/// Counts what the guest sends: its bytes, and the refs of its
/// advertisement (pkt-lines up to the first flush-pkt).
pub struct Relay {
    max_bytes: u64,
    bytes: u64,
    refs: usize,
    /// Still in the advertisement.
    advertising: bool,
    /// The pkt-line header read so far.
    header: Vec<u8>,
    /// Payload bytes of the current pkt-line still to skip.
    payload_left: usize,
}

impl Relay {
    /// A fresh count with a byte cap.
    pub fn new(max_bytes: u64) -> Relay {
        Relay { max_bytes, bytes: 0, refs: 0, advertising: true, header: Vec::with_capacity(4), payload_left: 0 }
    }

    /// Accounts for `data`; an error once a bound is passed or the
    /// advertisement is not pkt-lines.
    pub fn check(&mut self, data: &[u8]) -> Result<(), GitError> {
        self.bytes += data.len() as u64;
        if self.bytes > self.max_bytes {
            return Err(GitError::TooMuch(format!("more than {} bytes (set {ENV_MAX_BYTES} to allow more)", self.max_bytes)));
        }
        let mut rest = data;
        while self.advertising && !rest.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(rest.len());
                self.payload_left -= skip;
                rest = &rest[skip..];
                continue;
            }
            let need = 4 - self.header.len();
            let take = need.min(rest.len());
            self.header.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.header.len() < 4 {
                break;
            }
            let len = std::str::from_utf8(&self.header)
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok())
                .ok_or_else(|| GitError::TooMuch("an advertisement that is not git's protocol".into()))?;
            self.header.clear();
            match len {
                0 => self.advertising = false,
                1..=3 => return Err(GitError::TooMuch("an advertisement that is not git's protocol".into())),
                _ => {
                    self.refs += 1;
                    GIT_GUEST_REFS.check_len(self.refs).map_err(|e| GitError::TooMuch(e.to_string()))?;
                    self.payload_left = len - 4;
                }
            }
        }
        Ok(())
    }
}

/// The `ext::` URL under which host git runs this bridge: hutch's own
/// program, escaped as the transport wants (`% ` for a space, `%%` for %).
pub fn url() -> Result<String, GitError> {
    let exe = std::env::current_exe().map_err(GitError::io("finding hutch's own program", std::path::Path::new("/proc/self/exe")))?;
    let exe = exe.to_str().ok_or_else(|| GitError::Unguardable { path: exe.clone(), why: "is not UTF-8 (hutch's own path)".into() })?;
    Ok(format!("ext::{} {SUBCOMMAND} %S", exe.replace('%', "%%").replace(' ', "% ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(payload: &str) -> String {
        format!("{:04x}{payload}", payload.len() + 4)
    }

    #[test]
    fn the_advertisement_is_counted_across_chunks_and_bounded() {
        let advertised = format!("{}{}0000", pkt("abc refs/heads/main\0caps\n"), pkt("def refs/heads/x\n"));
        let mut relay = Relay::new(1 << 20);
        for chunk in advertised.as_bytes().chunks(3) {
            relay.check(chunk).unwrap();
        }
        assert_eq!(relay.refs, 2);
        assert!(!relay.advertising);
        relay.check(b"PACK anything after the flush is not parsed").unwrap();

        let mut small = Relay::new(10);
        assert!(matches!(small.check(&[0; 11]), Err(GitError::TooMuch(_))));
        let mut garbage = Relay::new(1 << 20);
        assert!(garbage.check(b"zzzz").is_err());
        let mut many = Relay::new(u64::MAX);
        let line = pkt("x refs/heads/y\n");
        let err = (0..=GIT_GUEST_REFS.max_usize()).try_for_each(|_| many.check(line.as_bytes())).unwrap_err();
        assert!(err.to_string().contains("refs"), "{err}");
    }
}
