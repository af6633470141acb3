//! Rewriting a client's HTTP/2 header blocks so that any `:authority` is
//! accepted.
//!
//! On a Unix socket or vsock, `:authority` means nothing, and gRPC clients
//! fill it with whatever they have: grpcio sends the socket path
//! percent-encoded, grpc-java, Bazel and grpc-swift send the raw path. h2
//! (under hyper and tonic) parses it as a URI authority and resets every
//! such stream with PROTOCOL_ERROR before the agent sees it. Upstream has no
//! switch for this (h2 pull request 487, "Do not require authority for UNIX
//! domain sockets", is still open; hyper issue 3750 and tonic issue 243 ask
//! the same), so the agent fixes it in front of h2: each header block the
//! client sends is decoded with the client's own HPACK state, an
//! `:authority` that does not parse as one is dropped (h2 accepts requests
//! without it), and the block is re-encoded as plain literals that never
//! touch HPACK's dynamic table, so h2's decoder stays in step whatever the
//! client's table holds.
//!
//! Everything is bounded: a block over [`limits::MAX_HEADER_BLOCK_BYTES`]
//! compressed or [`limits::MAX_HEADER_LIST_BYTES`] decoded, or one that does
//! not decode, ends the connection.

use std::borrow::Cow;

use loona_hpack::Decoder;

use crate::limits;

/// HPACK's default dynamic table size, which the agent never changes
/// (SETTINGS_HEADER_TABLE_SIZE): the most a client's encoder may use.
const TABLE_SIZE: usize = 4096;

/// Why a header block was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not valid HPACK.
    #[error("an undecodable header block")]
    Hpack,
    /// Decoded, it is over the header list limit.
    #[error("a header list over {} bytes", limits::MAX_HEADER_LIST_BYTES)]
    TooLarge,
}

/// One connection's HPACK decoding state.
pub struct Rewriter {
    decoder: Decoder<'static>,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Rewriter { decoder }
    }
}

impl Rewriter {
    /// Decodes `block` (the client's next header block), and returns it
    /// re-encoded without dynamic-table references and without an invalid
    /// `:authority`.
    pub fn rewrite(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut listed = 0usize;
        let mut too_large = false;
        self.decoder
            .decode_with_cb(block, |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                listed += name.len() + value.len() + 32;
                if listed > limits::MAX_HEADER_LIST_BYTES {
                    too_large = true;
                    return;
                }
                if &*name == b":authority" && http::uri::Authority::try_from(&*value).is_err() {
                    return;
                }
                literal(&mut out, &name, &value);
            })
            .map_err(|_| HeaderError::Hpack)?;
        if too_large {
            return Err(HeaderError::TooLarge);
        }
        Ok(out)
    }
}

/// A "literal header field without indexing, new name", raw (no Huffman).
pub fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    string(out, name);
    string(out, value);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, 7, 0x00, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix, the first byte's other bits `flags`.
fn integer(out: &mut Vec<u8>, n: u32, flags: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        Decoder::new().decode(block).unwrap()
    }

    /// HPACK from RFC 7541 C.3 (requests with the dynamic table) and C.4
    /// (the same with Huffman), decoded across three blocks on one
    /// connection, come out as self-contained literal blocks.
    #[test]
    fn blocks_that_use_the_dynamic_table_and_huffman_are_made_self_contained() {
        let c3: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x0fwww.example.com",
            b"\x82\x86\x84\xbe\x58\x08no-cache",
            b"\x82\x87\x85\xbf\x40\x0acustom-key\x0ccustom-value",
        ];
        let c4: [&[u8]; 3] = [
            b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
            b"\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf",
            b"\x82\x87\x85\xbf\x40\x88\x25\xa8\x49\xe9\x5b\xa9\x7d\x7f\x89\x25\xa8\x49\xe9\x5b\xb8\xe8\xb4\xbf",
        ];
        for blocks in [c3, c4] {
            let mut rewriter = Rewriter::default();
            let out: Vec<_> = blocks.iter().map(|b| decode(&rewriter.rewrite(b).unwrap())).collect();
            let authority = (b":authority".to_vec(), b"www.example.com".to_vec());
            assert!(out[0].contains(&authority) && out[1].contains(&authority) && out[2].contains(&authority), "{out:?}");
            assert!(out[1].contains(&(b"cache-control".to_vec(), b"no-cache".to_vec())));
            assert!(out[2].contains(&(b"custom-key".to_vec(), b"custom-value".to_vec())));
            assert!(out[2].contains(&(b":scheme".to_vec(), b"https".to_vec())));
        }
    }

    #[test]
    fn an_authority_that_is_no_authority_is_dropped_and_the_rest_kept() {
        let mut block = Vec::new();
        for (name, value) in [(":method", "POST"), (":authority", "%2Ftmp%2Fagent.sock"), (":path", "/hutch.v1.Agent/Info")] {
            literal(&mut block, name.as_bytes(), value.as_bytes());
        }
        let out = decode(&Rewriter::default().rewrite(&block).unwrap());
        let names: Vec<&[u8]> = out.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, vec![&b":method"[..], b":path"]);
        let mut ok = Vec::new();
        literal(&mut ok, b":authority", b"localhost:8080");
        assert_eq!(decode(&Rewriter::default().rewrite(&ok).unwrap()), vec![(b":authority".to_vec(), b"localhost:8080".to_vec())]);
    }

    #[test]
    fn garbage_and_oversized_lists_are_refused() {
        assert_eq!(Rewriter::default().rewrite(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Err(HeaderError::Hpack));
        let mut big = Vec::new();
        for i in 0..100 {
            literal(&mut big, format!("x-{i}").as_bytes(), &[b'v'; 1000]);
        }
        assert_eq!(Rewriter::default().rewrite(&big), Err(HeaderError::TooLarge));
    }

    #[test]
    fn long_strings_use_multi_byte_lengths() {
        let mut block = Vec::new();
        literal(&mut block, b"x-long", &[b'a'; 300]);
        assert_eq!(decode(&block), vec![(b"x-long".to_vec(), vec![b'a'; 300])]);
    }
}
