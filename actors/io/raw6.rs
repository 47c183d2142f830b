//! Raw IPv6 sockets for ESP (next header 50) and AH (51): the IPv6 *outer* side (issue 11,
//! point 1) of an interface with an IPv6 address.
//!
//! IPv6 raw sockets differ from IPv4 ones (RFC 3542 §3): the kernel never hands over the IPv6
//! header, only what follows it (and its extension headers), with the source in the socket
//! address; it builds the IPv6 header of what is sent. So:
//!
//! Receive: an `AF_INET6`/`SOCK_RAW` socket per protocol and shard, bound to the interface
//! address (the kernel then delivers only packets to that address: which of the host's
//! addresses a packet was for needs no ancillary data), with a socket filter
//! ([`bpf::raw6_spi_filter`]) that keeps only the SPIs of this shard. The filter sees the packet
//! from the ESP or AH header on, so the SPI is at a fixed offset (unlike IPv4's header
//! length).
//!
//! The shards read with [`RawReceiver6::recv_whole`], which writes the IPv6 header back in
//! front of each packet (source from the socket address, destination the bound address,
//! payload length and next header from what arrived): the decapsulation then takes the one
//! form it takes for IPv4 ("a whole packet"), and AH, whose ICV covers the IPv6 header
//! (RFC 4302 §3.3.3.1.2), gets that header back with its immutable fields as sent. (The
//! kernel removes any extension header the peer put before ESP/AH; an AH ICV over such
//! headers then fails and is counted. Peers send none in practice.)
//!
//! Send: the shards use [`RawIpv6Sender`], one `AF_INET6`/`IPPROTO_RAW` socket (which
//! implies `IPV6_HDRINCL`) taking the complete IPv6 packets the SA built, as the IPv4 side
//! takes complete IPv4 packets: one socket carries both ESP and AH (a per-protocol socket
//! would need the packet's protocol to pick it), the source is the SA's own local address,
//! and the bytes sent are exactly the bytes an AH ICV was computed over. Like the IPv4
//! `IPPROTO_RAW` socket it never fragments: the shard fragments a packet larger than the path
//! first (`fragment_last`, RFC 8200 §4.5), and one larger than the device MTU fails with
//! EMSGSIZE (counted as a send error). The tests send bare ESP/AH packets with a test-only
//! `RawSender6` (the kernel writes the header).

use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use ikehub::wire::Ipv6Repr;
use ikehub::wire::ipv6::HEADER_LEN;

use super::batch::{BatchSend, Dest, PacketBatch};
use super::bpf::{self, IpsecProto};
use super::raw::Share;

fn raw6_socket(proto: IpsecProto, local: Ipv6Addr, device: Option<&str>) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::IPV6,
        Type::RAW.nonblocking().cloexec(),
        Some(Protocol::from(i32::from(proto.number()))),
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("raw IPv6 socket for next header {}: {e}", proto.number()),
        )
    })?;
    if let Some(dev) = device {
        sock.bind_device(Some(dev.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("SO_BINDTODEVICE {dev}: {e}")))?;
    }
    sock.bind(&SockAddr::from(SocketAddrV6::new(local, 0, 0, 0)))
        .map_err(|e| io::Error::new(e.kind(), format!("binding raw IPv6 to {local}: {e}")))?;
    Ok(sock)
}

/// A non-blocking raw IPv6 socket receiving one IPsec protocol for one local address,
/// optionally only the SPIs of one shard. Packets arrive from their ESP or AH header on; the
/// batch address is the source (port 0).
#[derive(Debug)]
pub struct RawReceiver6 {
    sock: Socket,
    proto: IpsecProto,
    local: Ipv6Addr,
}

impl RawReceiver6 {
    /// Opens a receiver for `proto` packets to `local` (needs CAP_NET_RAW). With `share`,
    /// attaches the SPI filter and discards whatever slipped in before it was in place. With
    /// `device`, only packets arriving on that interface are seen.
    pub fn new(
        proto: IpsecProto,
        local: Ipv6Addr,
        share: Option<Share>,
        device: Option<&str>,
    ) -> io::Result<Self> {
        let this = Self {
            sock: raw6_socket(proto, local, device)?,
            proto,
            local,
        };
        if let Some(s) = share.filter(|s| s.shards > 1) {
            if s.shard >= s.shards {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("shard {} of {} does not exist", s.shard, s.shards),
                ));
            }
            bpf::attach_filter(&this, &bpf::raw6_spi_filter(proto, s.shard, s.shards))?;
            // Packets queued between socket() and the filter belong to every shard: drop them.
            let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            while this.sock.recv(&mut scratch).is_ok() {}
        }
        Ok(this)
    }

    /// `recvmmsg` into the free slots of `batch`; each packet starts with its ESP or AH
    /// header, its address is the IPv6 source.
    pub fn recv_batch(&self, batch: &mut PacketBatch) -> io::Result<usize> {
        loop {
            match batch.recvmmsg(self.as_raw_fd()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// [`recv_batch`](Self::recv_batch), then writes each new packet's IPv6 header back in
    /// front of it, in the slot's headroom (which must hold 40 bytes): source from the
    /// socket address, destination the bound address, next header this socket's protocol,
    /// hop limit 0 (unknown; AH counts it mutable). A packet without a source address, or
    /// without room, is left empty (length 0: the caller's demux counts it).
    pub fn recv_whole(&self, batch: &mut PacketBatch) -> io::Result<usize> {
        let first = batch.len();
        let n = self.recv_batch(batch)?;
        for i in first..first + n {
            let src = match batch.addr(i) {
                Some(SocketAddr::V6(a)) => Some(*a.ip()),
                _ => None,
            };
            let (buf, start, len) = batch.slot_buf_mut(i);
            let hdr = Ipv6Repr {
                hop_limit: 0,
                ..Ipv6Repr::new(
                    src.unwrap_or(Ipv6Addr::UNSPECIFIED),
                    self.local,
                    ikehub::wire::IpProtocol::from(self.proto.number()),
                    len,
                )
            };
            match start.checked_sub(HEADER_LEN) {
                Some(at) if src.is_some() && hdr.emit(&mut buf[at..start]).is_ok() => {
                    batch.set_bounds(i, at, len + HEADER_LEN)
                }
                _ => batch.set_bounds(i, start, 0),
            }
        }
        Ok(n)
    }
}

/// A non-blocking `AF_INET6`/`IPPROTO_RAW` socket sending complete IPv6 packets (ESP or AH,
/// header written by the caller) to the destination in their header.
#[derive(Debug)]
pub struct RawIpv6Sender {
    sock: Socket,
}

impl RawIpv6Sender {
    /// Opens the sender (needs CAP_NET_RAW); with `device`, packets leave through it.
    pub fn new(device: Option<&str>) -> io::Result<Self> {
        let sock = Socket::new(
            Domain::IPV6,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("IPv6 IPPROTO_RAW socket: {e}")))?;
        if let Some(dev) = device {
            sock.bind_device(Some(dev.as_bytes()))
                .map_err(|e| io::Error::new(e.kind(), format!("SO_BINDTODEVICE {dev}: {e}")))?;
        }
        Ok(Self { sock })
    }

    /// `sendmmsg` of packets `from..len()` of `batch`, each a complete IPv6 packet sent to
    /// the destination in its header.
    pub fn send_batch(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        batch
            .sendmmsg(self.as_raw_fd(), from, Dest::Ipv6HeaderDst, false)
            .0
    }
}

impl BatchSend for RawIpv6Sender {
    fn send_from(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        self.send_batch(batch, from)
    }
}

/// A non-blocking raw IPv6 socket sending ESP or AH packets from one local address; the
/// kernel writes the IPv6 header (and fragments a packet larger than the path, RFC 8200 §5:
/// the source may).
#[cfg(test)]
#[derive(Debug)]
pub struct RawSender6 {
    sock: Socket,
}

#[cfg(test)]
impl RawSender6 {
    /// Opens the sender of `proto` from `local` (needs CAP_NET_RAW); with `device`, packets
    /// leave through it.
    pub fn new(proto: IpsecProto, local: Ipv6Addr, device: Option<&str>) -> io::Result<Self> {
        Ok(Self {
            sock: raw6_socket(proto, local, device)?,
        })
    }

    /// `sendmmsg` of packets `from..len()` of `batch`, each an ESP or AH packet sent to its
    /// slot's address. Returns how many the kernel took; use [`send_all`](super::send_all)
    /// to skip refused packets and go on.
    pub fn send_batch(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        batch
            .sendmmsg(self.as_raw_fd(), from, Dest::SlotAddr, false)
            .0
    }

    /// Sends one packet to `peer`.
    pub fn send_to(&self, packet: &[u8], peer: Ipv6Addr) -> io::Result<usize> {
        self.sock.send_to(
            packet,
            &SockAddr::from(SocketAddr::V6(SocketAddrV6::new(peer, 0, 0, 0))),
        )
    }
}

#[cfg(test)]
impl BatchSend for RawSender6 {
    fn send_from(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        self.send_batch(batch, from)
    }
}

macro_rules! fd_impls {
    ($t:ty) => {
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.sock.as_raw_fd()
            }
        }
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.sock.as_fd()
            }
        }
    };
}
fd_impls!(RawReceiver6);
#[cfg(test)]
fd_impls!(RawSender6);
fd_impls!(RawIpv6Sender);

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::io::batch::send_all;
    use crate::io::testns::{in_netns, recv_until};

    const OTHER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    /// An ESP or AH packet (no IP header) of `len` bytes carrying `spi` where the protocol
    /// keeps it.
    fn packet(proto: IpsecProto, spi: u32, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        let at = proto.spi_offset() as usize;
        p[at..at + 4].copy_from_slice(&spi.to_be_bytes());
        p
    }

    /// The SPI, or `None` for a packet too short to carry one.
    fn spi_of(proto: IpsecProto, p: &[u8]) -> Option<u32> {
        let at = proto.spi_offset() as usize;
        Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
    }

    /// Collects (SPI, source) from `rx` until `want` arrived, then waits a little for extras.
    fn collect(
        rx: &RawReceiver6,
        proto: IpsecProto,
        want: usize,
    ) -> Vec<(Option<u32>, SocketAddr)> {
        recv_until(
            |b| rx.recv_batch(b),
            want,
            |p, a| {
                (
                    spi_of(proto, p),
                    a.unwrap_or_else(|| panic!("no source address")),
                )
            },
        )
    }

    /// Raw ESP and AH over IPv6 on ::1: each shard's receiver gets exactly its SPIs (the
    /// filter reads the SPI at the start of what an IPv6 raw socket sees), an unfiltered one
    /// all of them, each with the source address; a receiver bound to another address of
    /// the host sees none of them.
    #[test]
    fn raw6_spi_filter_gives_each_shard_its_share() {
        in_netns("raw6_spi_filter_gives_each_shard_its_share", || {
            let lo = Ipv6Addr::LOCALHOST;
            std::process::Command::new("ip")
                .args(["-6", "addr", "add", "2001:db8::2/128", "dev", "lo", "nodad"])
                .status()
                .expect("ip addr add");
            let n = 3;
            let share = |k, shards| Some(Share { shard: k, shards });
            let esp: Vec<RawReceiver6> = (0..n)
                .map(|k| RawReceiver6::new(IpsecProto::Esp, lo, share(k, n), None).unwrap())
                .collect();
            let esp_all = RawReceiver6::new(IpsecProto::Esp, lo, None, None).unwrap();
            let elsewhere = RawReceiver6::new(IpsecProto::Esp, OTHER, None, None).unwrap();
            let ah: Vec<RawReceiver6> = (0..2)
                .map(|k| RawReceiver6::new(IpsecProto::Ah, lo, share(k, 2), None).unwrap())
                .collect();
            let esp_tx = RawSender6::new(IpsecProto::Esp, lo, None).unwrap();
            let ah_tx = RawSender6::new(IpsecProto::Ah, lo, None).unwrap();

            let to = Some(SocketAddr::V6(SocketAddrV6::new(lo, 0, 0, 0)));
            let esp_spis: Vec<u32> = (1000..1030).chain([0xffff_fffe, 0x8000_0001]).collect();
            let mut batch = PacketBatch::with_defaults();
            for spi in &esp_spis {
                batch.push(&packet(IpsecProto::Esp, *spi, 100), to).unwrap();
            }
            let mut cursor = 0;
            send_all(&esp_tx, &mut batch, &mut cursor, |i, e| {
                panic!("ESP packet {i}: {e}")
            })
            .unwrap();
            let ah_spis: Vec<u32> = (5000..5010).collect();
            for spi in &ah_spis {
                ah_tx
                    .send_to(&packet(IpsecProto::Ah, *spi, 80), lo)
                    .unwrap();
            }
            // A runt: too short for an SPI, kept by shard 0 only (it counts it).
            esp_tx.send_to(&[0xee; 3], lo).unwrap();

            let src = SocketAddr::V6(SocketAddrV6::new(lo, 0, 0, 0));
            let expect = |spis: &[u32], k: u32, shards: u32| -> Vec<(Option<u32>, SocketAddr)> {
                spis.iter()
                    .filter(|s| *s % shards == k)
                    .map(|s| (Some(*s), src))
                    .collect()
            };
            for (k, rx) in esp.iter().enumerate() {
                let mut want = expect(&esp_spis, k as u32, n);
                if k == 0 {
                    want.push((None, src));
                }
                assert_eq!(
                    collect(rx, IpsecProto::Esp, want.len()),
                    want,
                    "ESP shard {k} of {n} (shard 0 keeps the runt)"
                );
            }
            let mut want = expect(&esp_spis, 0, 1);
            want.push((None, src));
            assert_eq!(
                collect(&esp_all, IpsecProto::Esp, want.len()),
                want,
                "the unfiltered socket sees every packet"
            );
            assert!(
                collect(&elsewhere, IpsecProto::Esp, 0).is_empty(),
                "a receiver bound to another address saw packets to ::1"
            );
            for (k, rx) in ah.iter().enumerate() {
                let want = expect(&ah_spis, k as u32, 2);
                assert_eq!(
                    collect(rx, IpsecProto::Ah, want.len()),
                    want,
                    "AH shard {k} of 2"
                );
            }
        });
    }

    /// What the shards use: complete IPv6 packets (ESP and AH) sent through one
    /// `IPPROTO_RAW` socket come back from `recv_whole` byte for byte, the rebuilt header
    /// included (hop limit aside: it is not known at the receiver, AH counts it mutable).
    #[test]
    fn hdrincl_packets_come_back_whole() {
        in_netns("hdrincl_packets_come_back_whole", || {
            let lo = Ipv6Addr::LOCALHOST;
            let tx = RawIpv6Sender::new(None).unwrap();
            for proto in [IpsecProto::Esp, IpsecProto::Ah] {
                let rx = RawReceiver6::new(proto, lo, None, None).unwrap();
                let mut sent = Vec::new();
                let mut batch = PacketBatch::with_defaults();
                for k in 0..5u32 {
                    let body = packet(proto, 0x4000 + k, 64 + 8 * k as usize);
                    let mut p = vec![0u8; HEADER_LEN];
                    Ipv6Repr::new(
                        lo,
                        lo,
                        ikehub::wire::IpProtocol::from(proto.number()),
                        body.len(),
                    )
                    .emit(&mut p)
                    .unwrap();
                    p.extend_from_slice(&body);
                    batch.push(&p, None).unwrap();
                    sent.push(p);
                }
                let mut cursor = 0;
                send_all(&tx, &mut batch, &mut cursor, |i, e| {
                    panic!("packet {i}: {e}")
                })
                .unwrap();
                let mut got = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut b = PacketBatch::new(8, 2048, 128);
                while got.len() < sent.len() && Instant::now() < deadline {
                    b.clear();
                    match rx.recv_whole(&mut b) {
                        Ok(_) => got.extend(b.iter().map(|(p, _)| {
                            let mut p = p.to_vec();
                            p[7] = 64; // the hop limit we sent
                            p
                        })),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(e) => panic!("recvmmsg: {e}"),
                    }
                }
                assert_eq!(got, sent, "{proto:?}");
            }
        });
    }

    #[test]
    fn raw6_filter_shape() {
        let f = bpf::raw6_spi_filter(IpsecProto::Ah, 1, 4);
        assert_eq!(f[1].k, 8, "length check covers the AH SPI");
        assert_eq!(f[2].k, 4, "AH SPI offset");
        assert_eq!(f[3].k, 4, "modulus");
        assert_eq!(f[4].k, 1, "shard");
        assert_eq!(f[5].k, 0, "short packets only on shard 0");
        assert_eq!(bpf::raw6_spi_filter(IpsecProto::Esp, 0, 4)[5].k, u32::MAX);
    }
}
