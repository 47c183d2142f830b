//! IPv6 fixed header (RFC 8200 §3). Extension headers are walked elsewhere; this view reads
//! and writes only the 40 bytes every IPv6 packet starts with.

use std::net::Ipv6Addr;

use super::ip::IpProtocol;
use super::{Error, Result, be16, put16};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// The minimum MTU every IPv6 link must carry (RFC 8200 §5).
pub const MIN_MTU: usize = 1280;

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A zero-copy view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps without checks; accessors may panic on short buffers. Use `new_checked`.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the version is 6 and that the header and the payload length fit the buffer
    /// (which may be longer: link padding). A payload length of 0 with a payload behind it is
    /// a jumbogram (RFC 2675): no link this daemon uses carries one, so it is malformed here.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        let len = usize::from(self.payload_len());
        if len == 0 && b.len() > HEADER_LEN && self.next_header() == IpProtocol::HOP_BY_HOP {
            return Err(Error::Malformed);
        }
        if b.len() < HEADER_LEN + len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        (u32::from(b[1] & 0x0f) << 16) | (u32::from(b[2]) << 8) | u32::from(b[3])
    }

    /// Bytes after the fixed header (extension headers included).
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The type of the header after the fixed one (an extension header or the upper layer).
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr(self.buffer.as_ref(), field::SRC))
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr(self.buffer.as_ref(), field::DST))
    }

    /// The bytes after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        let len = usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + len]
    }

    /// The whole packet (header and payload), without link padding.
    pub fn packet(&self) -> &[u8] {
        let len = usize::from(self.payload_len());
        &self.buffer.as_ref()[..HEADER_LEN + len]
    }
}

fn addr(b: &[u8], at: usize) -> [u8; 16] {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    o
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn b(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Writes version 6, the traffic class and the flow label (the low 20 bits).
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.b()[..4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.b(), field::PAYLOAD_LEN, v);
    }

    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.b()[field::NEXT_HEADER] = p.0;
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.b()[field::HOP_LIMIT] = v;
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.b()[field::SRC..field::SRC + 16].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.b()[field::DST..field::DST + 16].copy_from_slice(&a.octets());
    }

    /// The payload, mutable, up to the payload length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.payload_len());
        &mut self.b()[HEADER_LEN..HEADER_LEN + len]
    }
}

/// A parsed IPv6 fixed header. `next_header` is the header right after it, which may be an
/// extension header: the walk to the upper layer is not this type's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    /// Payload length in bytes (everything after the fixed header).
    pub payload_len: usize,
    pub hop_limit: u8,
    /// DSCP and ECN.
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// A header we originate: hop limit 64, no traffic class, flow label 0. Set the other fields
    /// with struct-update syntax where they differ.
    pub fn new(
        src_addr: Ipv6Addr,
        dst_addr: Ipv6Addr,
        next_header: IpProtocol,
        payload_len: usize,
    ) -> Self {
        Self {
            src_addr,
            dst_addr,
            next_header,
            payload_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
    }

    /// Parses a packet's fixed header after [`Ipv6Packet::check_len`].
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte header into the start of `buf`. A payload over 65,535 bytes would
    /// need a jumbogram and is refused.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let len = u16::try_from(self.payload_len).map_err(|_| Error::Malformed)?;
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_version_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMPv6 echo request from 2001:db8::1 to 2001:db8::2 with 8 bytes of payload, traffic
    /// class 0xb8 (EF), flow label 0x12345, hop limit 64 (written out by hand from RFC 8200 §3).
    const PACKET: [u8; 48] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x08, 58, 64, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
        128, 0, 0, 0, 0, 1, 0, 1,
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            traffic_class: 0xb8,
            flow_label: 0x12345,
            ..Ipv6Repr::new(
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
                IpProtocol::ICMPV6,
                8,
            )
        }
    }

    #[test]
    fn parses_the_fixed_header() {
        let p = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), repr());
        assert_eq!(p.payload(), &PACKET[40..]);
    }

    #[test]
    fn emits_the_same_bytes() {
        let mut buf = [0u8; 48];
        repr().emit(&mut buf).unwrap();
        buf[40..].copy_from_slice(&PACKET[40..]);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..PACKET.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&PACKET[..len]).err(),
                Some(Error::Truncated),
                "length {len}"
            );
        }
    }

    #[test]
    fn refuses_other_versions_and_jumbograms() {
        let mut v4 = PACKET;
        v4[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).err(),
            Some(Error::Malformed)
        );
        // Payload length 0 with a hop-by-hop header and bytes behind: a jumbogram.
        let mut jumbo = PACKET;
        jumbo[4] = 0;
        jumbo[5] = 0;
        jumbo[6] = 0;
        assert_eq!(
            Ipv6Packet::new_checked(&jumbo[..]).err(),
            Some(Error::Malformed)
        );
        let big = Ipv6Repr::new(
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::LOCALHOST,
            IpProtocol::UDP,
            65_536,
        );
        assert_eq!(big.emit(&mut [0u8; 40]), Err(Error::Malformed));
    }

    #[test]
    fn padding_after_the_payload_is_not_part_of_it() {
        let mut padded = PACKET.to_vec();
        padded.extend_from_slice(&[0xee; 6]);
        let p = Ipv6Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.packet(), &PACKET[..]);
    }
}
