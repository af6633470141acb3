//! Ethernet frames as QEMU's `-netdev stream` carries them (each one a
//! 4-byte big-endian length, then the frame), and the smoltcp device over
//! them: frames read from QEMU wait in a queue until the stack takes them;
//! frames the stack sends are appended, framed, to an outgoing buffer that
//! the link writes to QEMU. Both are bounded: the stack is not offered more
//! than [`OUT_LIMIT`] unsent bytes, and nothing is read while frames wait.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The longest frame the link carries: the MTU, an Ethernet header and a
/// VLAN tag. QEMU passes on what the guest's driver sends, and a guest that
/// sends more is not following the device's MTU.
pub const MAX_FRAME: usize = super::addresses::MTU as usize + 14 + 4;

/// Unsent bytes past which the stack is told the device is busy.
pub const OUT_LIMIT: usize = 1 << 20;

/// A frame the link cannot carry.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Longer than [`MAX_FRAME`] (or shorter than an Ethernet header).
    #[error("a frame of {0} bytes from QEMU (the link carries 14..={MAX_FRAME})")]
    Length(usize),
}

/// The device: frames in, frames out.
pub struct Frames {
    rx: VecDeque<Bytes>,
    out: BytesMut,
}

impl Frames {
    /// No frames yet.
    pub fn new() -> Frames {
        Frames { rx: VecDeque::new(), out: BytesMut::with_capacity(OUT_LIMIT + MAX_FRAME + 4) }
    }

    /// Moves every whole frame at the start of `buf` to the receive queue;
    /// a partial one stays in `buf`.
    pub fn take_in(&mut self, buf: &mut BytesMut) -> Result<(), FrameError> {
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if !(14..=MAX_FRAME).contains(&len) {
                return Err(FrameError::Length(len));
            }
            if buf.len() < 4 + len {
                break;
            }
            buf.advance(4);
            self.rx.push_back(buf.split_to(len).freeze());
        }
        Ok(())
    }

    /// The next frame the stack will take, if any.
    pub fn next_in(&self) -> Option<&Bytes> {
        self.rx.front()
    }

    /// Whether frames wait for the stack.
    pub fn has_in(&self) -> bool {
        !self.rx.is_empty()
    }

    /// The framed bytes waiting to go to QEMU.
    pub fn out(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`Frames::out`] were written.
    pub fn sent(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// Whether the stack is told the device is busy.
    pub fn out_full(&self) -> bool {
        self.out.len() >= OUT_LIMIT
    }
}

impl Default for Frames {
    fn default() -> Frames {
        Frames::new()
    }
}

/// One received frame.
pub struct Rx(Bytes);

/// Room for one frame to send.
pub struct Tx<'a>(&'a mut BytesMut);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp never builds a frame past the MTU it was given.
        self.0.put_u32(len as u32);
        let start = self.0.len();
        self.0.resize(start + len, 0);
        f(&mut self.0[start..])
    }
}

impl Device for Frames {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_>)> {
        // The answer to a received frame (an ACK, an ARP reply) is always
        // let through: it is small, and refusing it would drop the frame.
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.out)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        if self.out_full() { None } else { Some(Tx(&mut self.out)) }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = super::addresses::MTU as usize + 14;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(frames: &[&[u8]]) -> BytesMut {
        let mut buf = BytesMut::new();
        for f in frames {
            buf.put_u32(f.len() as u32);
            buf.put_slice(f);
        }
        buf
    }

    #[test]
    fn whole_frames_are_taken_and_a_partial_one_waits() {
        let a = [1u8; 14];
        let b = [2u8; 60];
        let mut buf = framed(&[&a, &b]);
        buf.truncate(buf.len() - 1);
        let mut frames = Frames::new();
        frames.take_in(&mut buf).unwrap();
        assert_eq!(frames.next_in().map(|f| f.to_vec()), Some(a.to_vec()));
        assert_eq!(buf.len(), 4 + 59);
        buf.put_u8(2);
        frames.take_in(&mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(frames.rx.len(), 2);
    }

    #[test]
    fn lengths_out_of_range_are_refused() {
        for len in [0u32, 13, MAX_FRAME as u32 + 1, u32::MAX] {
            let mut buf = BytesMut::new();
            buf.put_u32(len);
            assert!(matches!(Frames::new().take_in(&mut buf), Err(FrameError::Length(_))), "{len}");
        }
    }

    #[test]
    fn sent_frames_are_framed_and_a_full_buffer_refuses_more() {
        let mut frames = Frames::new();
        let tx = frames.transmit(Instant::from_millis(0)).unwrap();
        phy::TxToken::consume(tx, 3, |b| b.copy_from_slice(b"abc"));
        assert_eq!(frames.out(), b"\0\0\0\x03abc");
        frames.sent(7);
        assert!(frames.out().is_empty());
        while !frames.out_full() {
            let tx = frames.transmit(Instant::from_millis(0)).unwrap();
            phy::TxToken::consume(tx, 60000, |_| ());
        }
        assert!(frames.transmit(Instant::from_millis(0)).is_none());
    }
}
