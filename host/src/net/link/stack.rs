//! The host's end of the link: a user-space TCP/IP stack (smoltcp) that
//! answers ARP for its address and TCP on one port, the proxy's. Every
//! other packet is dropped or refused (a RST): nothing is routed, so the
//! link leads nowhere but to the proxy, which decides each connection as it
//! does those of the vsock pipe.
//!
//! Listening sockets are made on demand: before the stack sees a SYN for
//! the proxy's port, a listener is added if none is free, up to
//! [`MAX_SOCKETS`] sockets in all; past that, the guest's SYN is refused.
//! Each connection, once established, becomes a [`LinkIo`] for the proxy,
//! and the stack moves bytes between its socket and the connection's
//! queues at each step.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpCidr, IpListenEndpoint, IpProtocol, Ipv4Packet, TcpPacket,
};
use tokio::sync::Notify;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

use super::addresses::{HOST_ADDRESS, HOST_MAC, PREFIX};
use super::frames::Frames;
use super::io::{Chunk, LinkIo, StackEnd, pair};

/// Sockets at once (listening, half-open and open): with the buffers below,
/// at most 80 MiB, whatever the guest sends.
pub const MAX_SOCKETS: usize = 128;
/// Each socket's receive buffer (guest → host).
const RX_BUFFER: usize = 128 * 1024;
/// Each socket's send buffer (host → guest): eight 64 KiB segments in flight.
const TX_BUFFER: usize = 512 * 1024;
/// Chunks queued each way per connection.
const QUEUE: usize = 4;
/// Largest chunk handed to the proxy.
const UP_CHUNK: usize = 64 * 1024;
/// A connection whose guest stops acknowledging for this long is dropped.
const TIMEOUT: Duration = Duration::from_secs(120);

/// What one socket is.
enum Slot {
    /// Waiting for, or in the middle of, a guest's handshake.
    Listening,
    /// Handed to the proxy.
    Open(Conn),
}

/// An open connection's stack-side state.
struct Conn {
    end: StackEnd,
    /// Bytes from the proxy not yet in the socket.
    pending: Bytes,
    /// The proxy finished writing (a FIN, or it let go of the connection).
    proxy_done: bool,
    /// The socket was told to close (after `pending` went out).
    closing: bool,
    /// The guest's FIN was passed on.
    fin_passed: bool,
    /// The proxy let go of the guest's bytes: they are dropped.
    discard: bool,
}

/// The stack.
pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    slots: HashMap<SocketHandle, Slot>,
    frames: Frames,
    port: u16,
    wake: Arc<Notify>,
}

impl Stack {
    /// A stack answering on `port` (the proxy's), woken through `wake` by
    /// the connections' ends.
    pub fn new(port: u16, wake: Arc<Notify>, now: Instant) -> Stack {
        let mut frames = Frames::new();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(HOST_MAC)));
        // The seed of its initial sequence numbers and ports: nothing secret
        // rides on it (the guest sees both ends), so a failure keeps the zero.
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        config.random_seed = u64::from_le_bytes(seed);
        let mut iface = Interface::new(config, &mut frames, now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(HOST_ADDRESS.into(), PREFIX));
        });
        Stack { iface, sockets: SocketSet::new(Vec::new()), slots: HashMap::new(), frames, port, wake }
    }

    /// The device, to feed frames in and take frames out.
    pub fn frames(&mut self) -> &mut Frames {
        &mut self.frames
    }

    /// When the stack next needs a step with nothing arriving (a
    /// retransmission, a delayed ACK); `None`: not before something does.
    pub fn delay(&mut self, now: Instant) -> Option<std::time::Duration> {
        self.iface.poll_delay(now, &self.sockets).map(|d| std::time::Duration::from_micros(d.total_micros()))
    }

    /// Takes every frame that arrived, moves bytes between sockets and
    /// connections, and sends what there is to send (until the device is
    /// full); the connections opened meanwhile, for the proxy.
    pub fn step(&mut self, now: Instant) -> Vec<LinkIo> {
        while let Some(frame) = self.frames.next_in() {
            if is_syn_to(frame, self.port) {
                self.listen_if_none_free();
            }
            self.iface.poll_ingress_single(now, &mut self.frames, &mut self.sockets);
        }
        let opened = self.service();
        while self.iface.poll_egress(now, &mut self.frames, &mut self.sockets) == PollResult::SocketStateChanged {
            if self.frames.out_full() {
                break;
            }
        }
        opened
    }

    /// Adds a listener unless one is free, within [`MAX_SOCKETS`].
    fn listen_if_none_free(&mut self) {
        let free = self
            .slots
            .iter()
            .any(|(handle, slot)| matches!(slot, Slot::Listening) && self.sockets.get::<tcp::Socket>(*handle).is_listening());
        if free || self.slots.len() >= MAX_SOCKETS {
            return;
        }
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; RX_BUFFER]), tcp::SocketBuffer::new(vec![0; TX_BUFFER]));
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        socket.set_timeout(Some(TIMEOUT));
        if socket.listen(IpListenEndpoint { addr: Some(HOST_ADDRESS.into()), port: self.port }).is_ok() {
            let handle = self.sockets.add(socket);
            self.slots.insert(handle, Slot::Listening);
        }
    }

    /// One pass over every socket.
    fn service(&mut self) -> Vec<LinkIo> {
        let mut opened = Vec::new();
        let mut gone = Vec::new();
        for (handle, slot) in self.slots.iter_mut() {
            let socket = self.sockets.get_mut::<tcp::Socket>(*handle);
            match slot {
                Slot::Listening => match socket.state() {
                    State::Listen | State::SynReceived => {}
                    State::Closed | State::TimeWait => gone.push(*handle),
                    _ => {
                        let (io, end) = pair(QUEUE, self.wake.clone());
                        opened.push(io);
                        let mut conn =
                            Conn { end, pending: Bytes::new(), proxy_done: false, closing: false, fin_passed: false, discard: false };
                        let done = conn.service(socket);
                        *slot = Slot::Open(conn);
                        if done {
                            gone.push(*handle);
                        }
                    }
                },
                Slot::Open(conn) => {
                    if conn.service(socket) {
                        gone.push(*handle);
                    }
                }
            }
        }
        for handle in gone {
            self.slots.remove(&handle);
            self.sockets.remove(handle);
        }
        opened
    }
}

impl Conn {
    /// Moves what can move; whether the connection is over (the socket can go).
    fn service(&mut self, socket: &mut tcp::Socket) -> bool {
        if self.end.to_proxy.is_closed() {
            // The proxy let go of the connection.
            self.discard = true;
        }
        self.guest_to_proxy(socket);
        self.proxy_to_guest(socket);
        if self.discard && self.closing && socket.state() == State::FinWait2 {
            // Everything was sent and acknowledged, and nobody reads what
            // the guest might still send: do not wait for its FIN.
            socket.abort();
        }
        match socket.state() {
            // Reset, timed out, or fully closed: dropping the queue toward the
            // proxy without a FIN tells it the connection was reset, unless
            // the guest's FIN was passed on first.
            State::Closed | State::TimeWait => true,
            _ => false,
        }
    }

    fn guest_to_proxy(&mut self, socket: &mut tcp::Socket) {
        while socket.can_recv() {
            if self.discard {
                let _ = socket.recv(|buf| (buf.len(), ()));
                continue;
            }
            match self.end.to_proxy.try_reserve() {
                Ok(permit) => match socket.recv(|buf| {
                    let n = buf.len().min(UP_CHUNK);
                    (n, Bytes::copy_from_slice(&buf[..n]))
                }) {
                    Ok(bytes) => permit.send(Chunk::Data(bytes)),
                    Err(_) => break,
                },
                Err(TrySendError::Full(())) => return,
                Err(TrySendError::Closed(())) => self.discard = true,
            }
        }
        if !socket.may_recv() && socket.state() != State::Closed && !self.fin_passed && !self.discard {
            match self.end.to_proxy.try_send(Chunk::Fin) {
                Ok(()) => self.fin_passed = true,
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Closed(_)) => self.discard = true,
            }
        }
    }

    fn proxy_to_guest(&mut self, socket: &mut tcp::Socket) {
        loop {
            if self.pending.is_empty() && !self.proxy_done {
                match self.end.from_proxy.try_recv() {
                    Ok(Chunk::Data(bytes)) => self.pending = bytes,
                    Ok(Chunk::Fin) | Err(TryRecvError::Disconnected) => self.proxy_done = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if self.pending.is_empty() {
                break;
            }
            match socket.send_slice(&self.pending) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.pending.advance(n),
            }
        }
        if self.proxy_done && self.pending.is_empty() && !self.closing {
            // A FIN after the queued bytes.
            socket.close();
            self.closing = true;
        }
    }
}

/// Whether `frame` opens a TCP connection to the link's `port`.
fn is_syn_to(frame: &[u8], port: u16) -> bool {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else { return false };
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else { return false };
    if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != HOST_ADDRESS {
        return false;
    }
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else { return false };
    tcp.syn() && !tcp.ack() && tcp.dst_port() == port
}

#[cfg(test)]
mod tests {
    //! The stack against a second smoltcp stack playing the guest's kernel,
    //! frames passing between them as QEMU would pass them.

    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::addresses::GUEST_ADDRESS;
    use super::*;

    /// The guest's kernel: its own stack, on the same device type, whose
    /// framed output is the stack's input and the other way round.
    struct Guest {
        iface: Interface,
        frames: Frames,
        sockets: SocketSet<'static>,
    }

    /// Moves every frame `from` has to send into `to`'s receive queue, as
    /// QEMU's stream socket would.
    fn pass(from: &mut Frames, to: &mut Frames) {
        let mut framed = BytesMut::from(from.out());
        from.sent(framed.len());
        to.take_in(&mut framed).unwrap();
        assert!(framed.is_empty(), "a device's output holds whole frames only");
    }

    struct Harness {
        stack: Stack,
        guest: Guest,
        clock: i64,
        opened: Vec<LinkIo>,
    }

    impl Harness {
        fn new() -> Harness {
            let wake = Arc::new(Notify::new());
            let stack = Stack::new(3128, wake, Instant::from_millis(0));
            let mut frames = Frames::new();
            let config = Config::new(HardwareAddress::Ethernet(EthernetAddress([0x52, 0x54, 0, 0x68, 0x75, 0x01])));
            let mut iface = Interface::new(config, &mut frames, Instant::from_millis(0));
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(GUEST_ADDRESS.into(), PREFIX));
            });
            Harness { stack, guest: Guest { iface, frames, sockets: SocketSet::new(Vec::new()) }, clock: 0, opened: Vec::new() }
        }

        /// One round: the guest's frames to the stack, a step, the stack's frames to the guest.
        fn round(&mut self) {
            self.clock += 1;
            let now = Instant::from_millis(self.clock);
            self.guest.iface.poll(now, &mut self.guest.frames, &mut self.guest.sockets);
            pass(&mut self.guest.frames, self.stack.frames());
            self.opened.extend(self.stack.step(now));
            pass(self.stack.frames(), &mut self.guest.frames);
        }

        fn connect(&mut self, port: u16, local: u16) -> SocketHandle {
            let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 1 << 20]), tcp::SocketBuffer::new(vec![0; 1 << 16]));
            socket.connect(self.guest.iface.context(), (HOST_ADDRESS, port), local).unwrap();
            self.guest.sockets.add(socket)
        }

        fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
            self.guest.sockets.get_mut::<tcp::Socket>(handle)
        }

        /// Rounds, letting the runtime's tasks run between them, until `done`.
        async fn until(&mut self, what: &str, mut done: impl FnMut(&mut Harness) -> bool) {
            for _ in 0..100_000 {
                if done(self) {
                    return;
                }
                self.round();
                tokio::task::yield_now().await;
            }
            panic!("never: {what}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_guest_connection_reaches_the_proxy_end_both_ways_and_closes() {
        let mut h = Harness::new();
        let conn = h.connect(3128, 40000);
        h.until("the proxy gets the connection", |h| !h.opened.is_empty()).await;
        let mut io = h.opened.remove(0);
        h.socket(conn).send_slice(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        h.socket(conn).close();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            io.read_to_end(&mut got).await.unwrap();
            // 4 MiB back, then a FIN.
            let body: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
            io.write_all(&body).await.unwrap();
            io.shutdown().await.unwrap();
            got
        });
        let mut received = Vec::new();
        h.until("the guest gets 4 MiB and the FIN", |h| {
            let socket = h.socket(conn);
            while socket.can_recv() {
                let _ = socket.recv(|b| {
                    received.extend_from_slice(b);
                    (b.len(), ())
                });
            }
            !socket.may_recv() && socket.recv_queue() == 0
        })
        .await;
        assert_eq!(reader.await.unwrap(), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(received.len(), 4 << 20);
        assert!(received.iter().enumerate().all(|(i, b)| *b == (i as u32 % 251) as u8));
        h.until("the stack lets the socket go", |h| h.stack.slots.is_empty()).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn other_ports_are_refused_and_sockets_are_bounded() {
        let mut h = Harness::new();
        let other = h.connect(22, 40001);
        h.until("the other port refuses", |h| h.socket(other).state() == State::Closed).await;
        assert!(h.stack.slots.is_empty());
        // More connections than sockets: the stack never holds more than
        // MAX_SOCKETS, and the ones past it are refused.
        let handles: Vec<_> = (0..MAX_SOCKETS as u16 + 8).map(|i| h.connect(3128, 41000 + i)).collect();
        h.until("every connection is open or refused", |h| {
            handles.iter().all(|c| matches!(h.socket(*c).state(), State::Established | State::Closed))
        })
        .await;
        assert!(h.stack.slots.len() <= MAX_SOCKETS);
        let open = handles.iter().filter(|c| h.socket(**c).state() == State::Established).count();
        assert_eq!(open, MAX_SOCKETS);
        assert_eq!(h.opened.len(), MAX_SOCKETS);
        // The proxy letting go of them frees their sockets.
        h.opened.clear();
        h.until("the sockets are freed", |h| h.stack.slots.is_empty()).await;
    }

    #[test]
    fn only_a_syn_to_the_port_is_one() {
        assert!(!is_syn_to(&[0u8; 10], 3128));
        assert!(!is_syn_to(&[0u8; 64], 3128));
    }
}
