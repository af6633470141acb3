//! Reading a TLS ClientHello's server name (SNI) before deciding what to do
//! with a tunnel: its name must be the host the guest asked to CONNECT to
//! (otherwise a guest could tunnel to an allowed name and talk to another),
//! and it says whether hutch intercepts (the host has secrets) or passes the
//! bytes on untouched.
//!
//! The bytes read are kept and replayed ([`Peeked`]), so nothing is lost
//! whichever way the connection goes on.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The most of a ClientHello read before giving up on finding its name:
/// real ones are 0.5-2 KiB (a post-quantum key share makes them ~1.8 KiB).
const MAX_HELLO: usize = 64 * 1024;

/// What the first bytes of a tunnel are.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A TLS ClientHello, with its server name if it has one.
    Tls(Option<String>),
    /// Anything else (plain bytes of some other protocol).
    Other,
}

/// Reads from `io` into `buf` until the first TLS handshake message is
/// complete (or the bytes show they are not TLS), and says what they are.
/// Every byte read stays in `buf`, also when the future is dropped halfway.
pub async fn read_opening(io: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> io::Result<Opening> {
    loop {
        match parse(buf) {
            Parsed::Done(opening) => return Ok(opening),
            Parsed::Incomplete if buf.len() >= MAX_HELLO => return Ok(Opening::Tls(None)),
            Parsed::Incomplete => {
                let mut chunk = [0u8; 4096];
                let n = io.read(&mut chunk).await?;
                if n == 0 {
                    // The client closed before a whole hello: nothing to decide on.
                    return Ok(if buf.first() == Some(&0x16) { Opening::Tls(None) } else { Opening::Other });
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

enum Parsed {
    Done(Opening),
    Incomplete,
}

/// Parses what `buf` holds so far: TLS records of type handshake (22),
/// whose payloads are concatenated into the first handshake message.
fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        None => return Parsed::Incomplete,
        Some(0x16) => {}
        Some(_) => return Parsed::Done(Opening::Other),
    }
    let mut handshake = Vec::new();
    let mut rest = buf;
    while rest.len() >= 5 {
        if rest[0] != 0x16 {
            return Parsed::Done(Opening::Tls(None));
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let Some(payload) = rest.get(5..5 + len) else { break };
        handshake.extend_from_slice(payload);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            let needed = 4 + (usize::from(handshake[1]) << 16 | usize::from(handshake[2]) << 8 | usize::from(handshake[3]));
            if handshake.len() >= needed {
                if handshake[0] != 1 {
                    return Parsed::Done(Opening::Tls(None));
                }
                return Parsed::Done(Opening::Tls(server_name(&handshake[4..needed])));
            }
        }
    }
    Parsed::Incomplete
}

/// The `host_name` entry of a ClientHello body's server_name extension.
fn server_name(hello: &[u8]) -> Option<String> {
    let mut r = Reader(hello);
    r.skip(2 + 32)?; // legacy_version, random
    let session = r.u8()?;
    r.skip(usize::from(session))?;
    let suites = r.u16()?;
    r.skip(usize::from(suites))?;
    let compression = r.u8()?;
    r.skip(usize::from(compression))?;
    let mut extensions = Reader(r.vec16()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let mut body = Reader(extensions.vec16()?);
        if kind != 0 {
            continue;
        }
        let mut names = Reader(body.vec16()?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec16()?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().map(str::to_owned);
            }
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a 16-bit length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub struct Peeked<T> {
    prefix: Vec<u8>,
    offset: usize,
    inner: T,
}

impl<T> Peeked<T> {
    /// `inner`, preceded by `prefix`.
    pub fn new(prefix: Vec<u8>, inner: T) -> Peeked<T> {
        Peeked { prefix, offset: 0, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Peeked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.offset < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.offset);
            let start = self.offset;
            buf.put_slice(&self.prefix[start..start + n]);
            self.offset += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Peeked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello made by rustls for `name`, as a client would send it.
    fn hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(crate::net::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn finds_the_name_in_whole_split_and_fragmented_hellos() {
        let bytes = hello("api.example.com");
        assert!(matches!(parse(&bytes), Parsed::Done(Opening::Tls(Some(ref n))) if n == "api.example.com"));
        assert!(matches!(parse(&bytes[..bytes.len() - 1]), Parsed::Incomplete));
        // The same message in two records.
        let body = &bytes[5..];
        let (a, b) = body.split_at(100);
        let mut two = vec![0x16, 3, 1, 0, 100];
        two.extend_from_slice(a);
        two.extend_from_slice(&[0x16, 3, 1]);
        two.extend_from_slice(&u16::try_from(b.len()).unwrap().to_be_bytes());
        two.extend_from_slice(b);
        assert!(matches!(parse(&two), Parsed::Done(Opening::Tls(Some(ref n))) if n == "api.example.com"));
        assert!(matches!(parse(b"SSH-2.0-OpenSSH"), Parsed::Done(Opening::Other)));
        assert!(matches!(parse(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]), Parsed::Done(Opening::Tls(None))), "not a ClientHello");
    }

    #[test]
    fn hostile_lengths_never_panic() {
        let bytes = hello("a.example");
        for cut in 0..bytes.len() {
            let mut broken = bytes.clone();
            broken[cut] = 0xff;
            let _ = parse(&broken);
            let _ = server_name(&broken[cut..]);
        }
    }

    #[tokio::test]
    async fn peeked_bytes_are_read_again() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let bytes = hello("x.example");
        tokio::io::AsyncWriteExt::write_all(&mut a, &bytes).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut a, b"after").await.unwrap();
        drop(a);
        let mut b = b;
        let mut prefix = Vec::new();
        let opening = read_opening(&mut b, &mut prefix).await.unwrap();
        assert_eq!(opening, Opening::Tls(Some("x.example".into())));
        let mut all = Vec::new();
        Peeked::new(prefix, b).read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), bytes.len() + 5);
    }
}
