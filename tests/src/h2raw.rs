//! A raw HTTP/2 client: frames written by hand, so a test can do what no
//! well-behaved client does (open streams past the server's limit, send any
//! `:authority`) and see exactly what the server answers.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub const DATA: u8 = 0x0;
/// HEADERS.
pub const HEADERS: u8 = 0x1;
/// RST_STREAM.
pub const RST_STREAM: u8 = 0x3;
/// SETTINGS.
pub const SETTINGS: u8 = 0x4;
/// GOAWAY.
pub const GOAWAY: u8 = 0x7;

/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// One frame as read.
#[derive(Debug)]
pub struct Frame {
    /// Its type.
    pub kind: u8,
    /// Its flags.
    pub flags: u8,
    /// Its stream.
    pub stream: u32,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The settings a SETTINGS frame carries.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload.chunks_exact(6).map(|s| (u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]]))).collect()
    }
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block of literal fields without indexing (no Huffman, no
/// table): any decoder reads it, whatever its state.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        push_string(&mut out, name.as_bytes());
        push_string(&mut out, value.as_bytes());
    }
    out
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    // HPACK integer with a 7-bit prefix.
    let mut len = s.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(s);
}

/// The request headers of a gRPC call to `path` with `authority`.
pub fn grpc_request(path: &str, authority: &str) -> Vec<u8> {
    header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

/// A connection to a Unix socket that has sent the preface and an empty
/// SETTINGS frame.
pub struct Conn {
    /// The socket.
    pub stream: UnixStream,
}

impl Conn {
    /// Connects and sends the client preface.
    pub fn connect(socket: &Path) -> io::Result<Conn> {
        let mut stream = UnixStream::connect(socket)?;
        stream.write_all(&[PREFACE, &frame(SETTINGS, 0, 0, &[])].concat())?;
        Ok(Conn { stream })
    }

    /// Reads one frame; `None` at the end of the connection.
    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 9];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload)?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Ok(Some(Frame { kind: head[3], flags: head[4], stream, payload }))
    }
}
