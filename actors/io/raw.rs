//! Raw IPv4 sockets for ESP (protocol 50) and AH (protocol 51).
//!
//! Receive: an `AF_INET`/`SOCK_RAW` socket per protocol and shard. Linux hands every raw
//! socket of a protocol its own copy of each (reassembled) datagram, IPv4 header included,
//! in network byte order; a socket filter ([`bpf::raw_spi_filter`]) keeps only the SPIs of
//! this shard.
//!
//! Send: one `IPPROTO_RAW` socket (which implies `IP_HDRINCL`) takes complete IPv4 packets;
//! the destination of each is read from its header. The kernel always rewrites the header
//! checksum and total length, fills a zero ID and a zero source address, and never
//! fragments: a packet larger than the output device MTU fails with EMSGSIZE whatever its
//! DF bit says, so the caller must fragment before sending (verified in the tests below).

use std::io;
#[cfg(test)]
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

#[cfg(test)]
use socket2::SockAddr;
use socket2::{Domain, Protocol, Socket, Type};

use super::batch::{BatchSend, Dest, PacketBatch};
use super::bpf::{self, IpsecProto};

/// Which share of the SPI space a raw receiver takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// This shard's number, `0..shards`.
    pub shard: u32,
    /// Number of shards.
    pub shards: u32,
}

/// A non-blocking raw IPv4 socket receiving one IPsec protocol, optionally only the SPIs
/// of one shard. Packets arrive with their IPv4 header; the batch address is the source
/// (port 0).
#[derive(Debug)]
pub struct RawReceiver {
    sock: Socket,
}

impl RawReceiver {
    /// Opens a receiver for `proto` (needs CAP_NET_RAW). With `share`, attaches the SPI
    /// filter and discards whatever slipped in before the filter was in place. With
    /// `device`, only packets arriving on that interface are seen.
    pub fn new(proto: IpsecProto, share: Option<Share>, device: Option<&str>) -> io::Result<Self> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(proto.number() as i32)),
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("raw socket for IP protocol {}: {e}", proto.number()),
            )
        })?;
        if let Some(dev) = device {
            sock.bind_device(Some(dev.as_bytes()))
                .map_err(|e| io::Error::new(e.kind(), format!("SO_BINDTODEVICE {dev}: {e}")))?;
        }
        let this = Self { sock };
        if let Some(s) = share.filter(|s| s.shards > 1) {
            if s.shard >= s.shards {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("shard {} of {} does not exist", s.shard, s.shards),
                ));
            }
            bpf::attach_filter(&this, &bpf::raw_spi_filter(proto, s.shard, s.shards))?;
            // Packets queued between socket() and the filter belong to every shard: drop them.
            let mut scratch = [0u8; 64];
            while this.sock.recv(uninit(&mut scratch)).is_ok() {}
        }
        Ok(this)
    }

    /// `recvmmsg` into the free slots of `batch`; each packet starts with its IPv4 header
    /// (use [`PacketBatch::advance`] with `4 * (p[0] & 0xf)` to skip it).
    pub fn recv_batch(&self, batch: &mut PacketBatch) -> io::Result<usize> {
        loop {
            match batch.recvmmsg(self.as_raw_fd()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

/// A non-blocking `IPPROTO_RAW` socket sending complete IPv4 packets.
#[derive(Debug)]
pub struct RawSender {
    sock: Socket,
}

impl RawSender {
    /// Opens the sender (needs CAP_NET_RAW); with `device`, packets leave through it.
    pub fn new(device: Option<&str>) -> io::Result<Self> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("IPPROTO_RAW socket: {e}")))?;
        if let Some(dev) = device {
            sock.bind_device(Some(dev.as_bytes()))
                .map_err(|e| io::Error::new(e.kind(), format!("SO_BINDTODEVICE {dev}: {e}")))?;
        }
        Ok(Self { sock })
    }

    #[cfg(test)]
    /// Sends one complete IPv4 packet to the destination in its header.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        let dst = ipv4_dst(packet)?;
        self.sock.send_to(packet, &SockAddr::from(dst))
    }

    /// `sendmmsg` of packets `from..len()` of `batch`, each a complete IPv4 packet sent to
    /// the destination in its header. Returns how many the kernel took; use
    /// [`send_all`](super::send_all) to skip refused packets (EMSGSIZE) and go on.
    pub fn send_batch(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        batch
            .sendmmsg(self.as_raw_fd(), from, Dest::Ipv4HeaderDst, false)
            .0
    }
}

impl BatchSend for RawSender {
    fn send_from(&self, batch: &mut PacketBatch, from: usize) -> io::Result<usize> {
        self.send_batch(batch, from)
    }
}

#[cfg(test)]
fn ipv4_dst(p: &[u8]) -> io::Result<SocketAddr> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an IPv4 packet",
        ));
    }
    Ok(SocketAddr::from(([p[16], p[17], p[18], p[19]], 0)))
}

fn uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: same layout; the kernel only writes initialised bytes into it.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), buf.len()) }
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
fd_impls!(RawReceiver);
fd_impls!(RawSender);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::batch::send_all;
    use crate::io::link::set_interface_mtu;
    use crate::io::testns::{in_netns, recv_until};

    /// An IPv4 packet 127.0.0.1 -> 127.0.0.1 of `proto` with `spi` where that protocol keeps
    /// it, `options` bytes of IP options (NOPs) and `total` bytes in all.
    fn packet(proto: IpsecProto, spi: u32, options: usize, total: usize, df: bool) -> Vec<u8> {
        let ihl = 20 + options;
        let mut p = vec![0u8; total];
        p[0] = 0x40 | (ihl / 4) as u8;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        if df {
            p[6] = 0x40;
        }
        p[8] = 64;
        p[9] = proto.number();
        p[12..16].copy_from_slice(&[127, 0, 0, 1]);
        p[16..20].copy_from_slice(&[127, 0, 0, 1]);
        p[20..ihl].fill(1); // IPOPT_NOP
        let at = ihl + proto.spi_offset() as usize;
        p[at..at + 4].copy_from_slice(&spi.to_be_bytes());
        p
    }

    fn spi_of(proto: IpsecProto, p: &[u8]) -> u32 {
        let at = 4 * (p[0] & 0xf) as usize + proto.spi_offset() as usize;
        u32::from_be_bytes(p[at..at + 4].try_into().unwrap())
    }

    /// Collects SPIs from `rx` until `want` arrived, then waits a little for extras.
    fn collect(rx: &RawReceiver, proto: IpsecProto, want: usize) -> Vec<u32> {
        recv_until(|b| rx.recv_batch(b), want, |p, _| spi_of(proto, p))
    }

    #[test]
    fn raw_spi_filter_gives_each_shard_its_share() {
        in_netns("raw_spi_filter_gives_each_shard_its_share", || {
            let n = 3;
            let esp: Vec<RawReceiver> = (0..n)
                .map(|k| {
                    RawReceiver::new(
                        IpsecProto::Esp,
                        Some(Share {
                            shard: k,
                            shards: n,
                        }),
                        None,
                    )
                    .unwrap()
                })
                .collect();
            let esp_all = RawReceiver::new(IpsecProto::Esp, None, None).unwrap();
            let ah: Vec<RawReceiver> = (0..2)
                .map(|k| {
                    RawReceiver::new(
                        IpsecProto::Ah,
                        Some(Share {
                            shard: k,
                            shards: 2,
                        }),
                        None,
                    )
                    .unwrap()
                })
                .collect();
            let tx = RawSender::new(None).unwrap();

            let mut batch = PacketBatch::with_defaults();
            let esp_spis: Vec<u32> = (1000..1030).chain([0xffff_fffe, 0x8000_0001]).collect();
            for (i, spi) in esp_spis.iter().enumerate() {
                // Every fourth packet carries 4 bytes of IP options: the filter must use
                // the real header length (BPF_MSH), not 20.
                let options = if i % 4 == 0 { 4 } else { 0 };
                batch
                    .push(&packet(IpsecProto::Esp, *spi, options, 100, true), None)
                    .unwrap();
            }
            let ah_spis: Vec<u32> = (5000..5010).collect();
            for spi in &ah_spis {
                batch
                    .push(&packet(IpsecProto::Ah, *spi, 0, 80, true), None)
                    .unwrap();
            }
            let mut cursor = 0;
            send_all(&tx, &mut batch, &mut cursor, |i, e| {
                panic!("packet {i}: {e}")
            })
            .unwrap();

            for (k, rx) in esp.iter().enumerate() {
                let want: Vec<u32> = esp_spis
                    .iter()
                    .copied()
                    .filter(|s| s % n == k as u32)
                    .collect();
                assert_eq!(
                    collect(rx, IpsecProto::Esp, want.len()),
                    want,
                    "ESP shard {k} of {n}"
                );
            }
            assert_eq!(
                collect(&esp_all, IpsecProto::Esp, esp_spis.len()),
                esp_spis,
                "unfiltered socket sees all"
            );
            for (k, rx) in ah.iter().enumerate() {
                let want: Vec<u32> = ah_spis
                    .iter()
                    .copied()
                    .filter(|s| s % 2 == k as u32)
                    .collect();
                assert_eq!(
                    collect(rx, IpsecProto::Ah, want.len()),
                    want,
                    "AH shard {k} of 2"
                );
            }
        });
    }

    #[test]
    fn hdrincl_larger_than_mtu_is_emsgsize() {
        in_netns("hdrincl_larger_than_mtu_is_emsgsize", || {
            set_interface_mtu("lo", 1500).unwrap();
            let rx = RawReceiver::new(IpsecProto::Esp, None, None).unwrap();
            let tx = RawSender::new(None).unwrap();
            for df in [true, false] {
                let e = tx
                    .send(&packet(IpsecProto::Esp, 7, 0, 1501, df))
                    .unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "DF={df}: {e}");
            }
            assert_eq!(
                tx.send(&packet(IpsecProto::Esp, 8, 0, 1500, true)).unwrap(),
                1500
            );

            // In a batch, the refused packet is reported and skipped, the rest goes out.
            let mut b = PacketBatch::new(4, 2048, 0);
            for (spi, len) in [(1, 100), (2, 1800), (3, 100)] {
                b.push(&packet(IpsecProto::Esp, spi, 0, len, false), None)
                    .unwrap();
            }
            let mut dropped = Vec::new();
            let mut cursor = 0;
            send_all(&tx, &mut b, &mut cursor, |i, e| {
                dropped.push((i, e.raw_os_error()))
            })
            .unwrap();
            assert_eq!(dropped, vec![(1, Some(libc::EMSGSIZE))]);
            assert_eq!(collect(&rx, IpsecProto::Esp, 3), vec![8, 1, 3]);
        });
    }

    #[test]
    fn sender_rejects_non_ipv4() {
        assert!(ipv4_dst(&[0x60; 40]).is_err());
        assert!(ipv4_dst(&[0x45; 10]).is_err());
        assert_eq!(
            ipv4_dst(&packet(IpsecProto::Esp, 1, 0, 40, false)).unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
    }
}
