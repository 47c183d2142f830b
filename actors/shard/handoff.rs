//! Packets that arrived on the wrong shard, on their way to the shard that owns their SA.
//!
//! A typed record per packet ([`HandoffMeta`]: what the packet is and what the first shard
//! already learned about it, the SPI included) beside one byte arena for the whole batch. The
//! owner runs the record through the same [`inbound`](super::EspShard::inbound) path as a packet
//! it read itself, so nothing is parsed twice and no hand-encoded header has to be decoded.

use std::net::{IpAddr, SocketAddr};

use ikehub::wire::ipv6;

use super::SaHandle;

/// How a WAN packet reached the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// The payload of a UDP datagram on the NAT-T port, SPI first (RFC 3948 §2.1).
    Udp,
    /// A whole IPv4 packet of protocol 50 from the raw ESP socket.
    Esp,
    /// A whole IPv4 packet of protocol 51 from the raw AH socket.
    Ah,
}

/// What the receiving shard learned about a WAN packet before it looked for its SA: read once,
/// carried with the packet if another shard owns the SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub encap: Encap,
    /// Our address the packet was sent to (the WAN it arrived on).
    pub local: IpAddr,
    /// The outer source; the port is the UDP source port (0 for raw IP).
    pub from: SocketAddr,
    /// The outermost SPI (AH's in an AH+ESP bundle). Only a key into this host's own SPI
    /// table, which holds SPIs we allocated: an unknown one is dropped.
    pub spi: u32,
}

/// One handed-over packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffMeta {
    /// Cleartext from the tunnel device for the outbound SA the sender's SPD chose (the
    /// daemon's handle, whose shard is the receiver).
    Cleartext { sa: SaHandle },
    /// A packet from the WAN whose SPI the receiver owns.
    Wan(Inbound),
}

#[derive(Clone, Copy, Debug)]
struct Record {
    meta: HandoffMeta,
    start: usize,
    len: usize,
}

/// Free bytes kept in front of each handed-over UDP payload: transport-mode decapsulation
/// rebuilds the IP header in front of the payload (`Received::Udp`: 20 bytes for IPv4, 40 for
/// IPv6), which a datagram read from the socket has in its slot's headroom.
const UDP_HEADROOM: usize = ipv6::HEADER_LEN;

/// A batch of handed-over packets: one record per packet and one byte arena, so filling it
/// copies each packet once and allocates nothing per packet. A batch sent away
/// ([`take`](Self::take)) is replaced by one with the room the sent one needed, so steady
/// traffic costs one allocation of the right size per batch and per receiving shard.
#[derive(Debug, Default)]
pub struct HandoffBatch {
    bytes: Vec<u8>,
    records: Vec<Record>,
}

impl HandoffBatch {
    fn with_room(records: usize, bytes: usize) -> Self {
        HandoffBatch {
            bytes: Vec::with_capacity(bytes),
            records: Vec::with_capacity(records),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    /// Memory the batch's packets take: arena bytes (headroom included) plus records. What
    /// the hand-over bound ([`MAX_HANDOFF_BYTES_IN_FLIGHT`](super::MAX_HANDOFF_BYTES_IN_FLIGHT))
    /// counts.
    pub fn footprint(&self) -> usize {
        self.bytes.len() + self.records.len() * std::mem::size_of::<Record>()
    }

    /// What [`push`](Self::push)ing a packet of `len` bytes adds to [`footprint`](Self::footprint).
    pub fn footprint_of(meta: HandoffMeta, len: usize) -> usize {
        let headroom = match meta {
            HandoffMeta::Wan(Inbound {
                encap: Encap::Udp, ..
            }) => UDP_HEADROOM,
            _ => 0,
        };
        headroom + len + std::mem::size_of::<Record>()
    }

    /// Appends a copy of `packet` with its record.
    pub fn push(&mut self, meta: HandoffMeta, packet: &[u8]) {
        if let HandoffMeta::Wan(Inbound {
            encap: Encap::Udp, ..
        }) = meta
        {
            self.bytes.resize(self.bytes.len() + UDP_HEADROOM, 0);
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packet);
        self.records.push(Record {
            meta,
            start,
            len: packet.len(),
        });
    }

    /// Record `i`: its meta, and the arena up to the end of its packet, which starts at the
    /// returned offset (the bytes in front of it are free headroom).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get_mut(&mut self, i: usize) -> (HandoffMeta, &mut [u8], usize) {
        let r = self.records[i];
        (r.meta, &mut self.bytes[..r.start + r.len], r.start)
    }

    /// Record `i`: its meta and its packet.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> (HandoffMeta, &[u8]) {
        let r = self.records[i];
        (r.meta, &self.bytes[r.start..r.start + r.len])
    }

    /// Takes the batch out, leaving an empty one with the same room behind.
    pub fn take(&mut self) -> HandoffBatch {
        let room = HandoffBatch::with_room(self.records.len(), self.bytes.len());
        std::mem::replace(self, room)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn wan(encap: Encap, spi: u32) -> HandoffMeta {
        HandoffMeta::Wan(Inbound {
            encap,
            local: Ipv4Addr::new(192, 0, 2, 1).into(),
            from: SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 4501)),
            spi,
        })
    }

    /// Every record comes back as it went in, in order, with its own bytes; UDP payloads
    /// have the headroom transport-mode decapsulation writes into; after the first batch,
    /// a batch of the same shape never grows (no allocation per packet).
    #[test]
    fn records_round_trip_in_order_without_growing() {
        const RECORDS: usize = crate::shard::MAX_RX;
        let mut b = HandoffBatch::default();
        let fill = |b: &mut HandoffBatch| {
            for k in 0..RECORDS {
                b.push(wan(Encap::Udp, k as u32), &[k as u8; 1400]);
            }
        };
        fill(&mut b);
        drop(b.take());
        let (bytes_at, records_at) = (b.bytes.as_ptr(), b.records.as_ptr());
        fill(&mut b);
        assert_eq!(b.bytes.as_ptr(), bytes_at, "arena reallocated");
        assert_eq!(b.records.as_ptr(), records_at, "records reallocated");
        b.clear();
        let sa = SaHandle::issue();
        let mut want = Vec::new();
        for k in 0..RECORDS {
            let meta = match k % 4 {
                0 => HandoffMeta::Cleartext { sa },
                1 => wan(Encap::Udp, 0x100 + k as u32),
                2 => wan(Encap::Esp, 0x200 + k as u32),
                _ => wan(Encap::Ah, 0x300 + k as u32),
            };
            let packet = vec![k as u8; 2048 - k];
            b.push(meta, &packet);
            want.push((meta, packet));
        }
        assert_eq!(b.len(), RECORDS);
        let mut taken = b.take();
        assert!(b.is_empty());
        assert!(
            b.bytes.capacity() >= taken.bytes.len(),
            "the fresh batch has room again"
        );
        for (i, (meta, packet)) in want.iter().enumerate() {
            let (m, buf, start) = taken.get_mut(i);
            assert_eq!(m, *meta);
            assert_eq!(
                &buf[start..],
                &packet[..],
                "its own bytes, nothing of the next"
            );
            if matches!(
                m,
                HandoffMeta::Wan(Inbound {
                    encap: Encap::Udp,
                    ..
                })
            ) {
                assert!(start >= UDP_HEADROOM);
            }
        }
        taken.clear();
        assert!(taken.is_empty());
    }

    /// `footprint_of` predicts exactly what `push` adds to `footprint` (the hand-over bound
    /// is checked before the push), for every kind of record.
    #[test]
    fn footprint_of_predicts_push() {
        let mut b = HandoffBatch::default();
        assert_eq!(b.footprint(), 0);
        let sa = SaHandle::issue();
        for (meta, len) in [
            (wan(Encap::Udp, 1), 1400),
            (wan(Encap::Esp, 2), 60),
            (wan(Encap::Ah, 3), 0),
            (HandoffMeta::Cleartext { sa }, 1500),
        ] {
            let before = b.footprint();
            b.push(meta, &vec![0xa5; len]);
            assert_eq!(
                b.footprint(),
                before + HandoffBatch::footprint_of(meta, len)
            );
            assert!(HandoffBatch::footprint_of(meta, len) > len);
        }
        drop(b.take());
        assert_eq!(b.footprint(), 0, "a taken batch leaves an empty one");
    }

    /// The first record of a batch is a UDP payload: it still has headroom in front.
    #[test]
    fn first_udp_record_has_headroom() {
        let mut b = HandoffBatch::default();
        b.push(wan(Encap::Udp, 7), &[1, 2, 3, 4, 5, 6, 7, 8]);
        b.push(wan(Encap::Esp, 7), &[9; 28]);
        let (_, buf, start) = b.get_mut(0);
        assert_eq!((start, buf.len()), (UDP_HEADROOM, UDP_HEADROOM + 8));
        let (_, buf, start) = b.get_mut(1);
        assert_eq!(&buf[start..], &[9; 28]);
    }
}
