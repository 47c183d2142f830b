//! ICMPv4 (RFC 792) header view, and the destination-unreachable / fragmentation-needed message
//! (RFC 1191 §4) the concentrator writes back into the cleartext side so that path MTU
//! discovery works through the tunnel.

use std::net::Ipv4Addr;

use super::ip::IpProtocol;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::{Error, Result, be16, be32, checksum, put16, put32};

/// Length of the ICMP header (type, code, checksum, 4 bytes of "rest of header").
pub const HEADER_LEN: usize = 8;
/// ICMP type 3: destination unreachable.
pub const TYPE_DST_UNREACHABLE: u8 = 3;
/// Code 4 of type 3: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// RFC 1812 §4.3.2.3: an ICMP error carries as much of the original datagram as fits in 576
/// bytes.
pub const MAX_ERROR_LEN: usize = 576;

/// A zero-copy view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// The 4 type-specific bytes after the checksum.
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// For type 3 code 4: the next-hop MTU in the low 16 bits (RFC 1191 §4).
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

/// A parsed ICMPv4 header: type, code and the 4 type-specific bytes; the data follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv4Repr {
    pub msg_type: u8,
    pub code: u8,
    pub rest_of_header: u32,
}

impl Icmpv4Repr {
    /// A destination-unreachable, fragmentation-needed header with the next-hop MTU.
    pub fn frag_needed(next_hop_mtu: u16) -> Self {
        Self {
            msg_type: TYPE_DST_UNREACHABLE,
            code: CODE_FRAG_NEEDED,
            rest_of_header: u32::from(next_hop_mtu),
        }
    }

    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv4Packet<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Self {
            msg_type: p.msg_type(),
            code: p.code(),
            rest_of_header: p.rest_of_header(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes header and `data` into `buf` and fills the checksum over both; returns the
    /// message length.
    pub fn emit(&self, buf: &mut [u8], data: &[u8]) -> Result<usize> {
        let len = HEADER_LEN + data.len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall);
        }
        buf[0] = self.msg_type;
        buf[1] = self.code;
        put16(buf, 2, 0);
        put32(buf, 4, self.rest_of_header);
        buf[HEADER_LEN..len].copy_from_slice(data);
        let c = checksum::checksum(&buf[..len]);
        put16(buf, 2, c);
        Ok(len)
    }
}

/// Builds into `out` a complete IPv4 packet carrying an ICMP "fragmentation needed and DF set"
/// for `original` (the cleartext packet that did not fit), from `source` to the original
/// sender, announcing `next_hop_mtu`. Returns the length written.
///
/// The message quotes the original header and as much of its payload as keeps the whole error
/// within 576 bytes (RFC 1812 §4.3.2.3; RFC 792 requires at least 8 payload bytes, which carry
/// the transport ports that the sender's PMTU cache needs).
pub fn build_frag_needed(
    source: Ipv4Addr,
    original: &[u8],
    next_hop_mtu: u16,
    out: &mut [u8],
) -> Result<usize> {
    let orig = Ipv4Packet::new_checked(original)?;
    let quote_len = usize::from(orig.total_len())
        .min(MAX_ERROR_LEN - ipv4::HEADER_LEN - HEADER_LEN)
        .max(orig.header_len());
    let quote = &original[..quote_len];
    let ip = Ipv4Repr::new(
        source,
        orig.src_addr(),
        IpProtocol::ICMP,
        HEADER_LEN + quote_len,
    );
    let total = ip.buffer_len() + HEADER_LEN + quote_len;
    if out.len() < total {
        return Err(Error::BufferTooSmall);
    }
    ip.emit(out)?;
    Icmpv4Repr::frag_needed(next_hop_mtu).emit(&mut out[ipv4::HEADER_LEN..total], quote)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frag_needed_bytes() {
        // A 1500-byte UDP datagram 198.51.100.7 -> 203.0.113.9, DF set.
        let mut orig = vec![0u8; 1500];
        Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 51, 100, 7),
            dst_addr: Ipv4Addr::new(203, 0, 113, 9),
            protocol: IpProtocol::UDP,
            payload_len: 1480,
            ttl: 63,
            tos: 0,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
        .emit(&mut orig)
        .unwrap();
        orig[20..28].copy_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x05, 0xc8, 0, 0]);
        let mut out = [0u8; 600];
        let n = build_frag_needed(Ipv4Addr::new(198, 51, 100, 1), &orig, 1438, &mut out).unwrap();
        assert_eq!(n, 576);
        let ip = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(ip.protocol(), IpProtocol::ICMP);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(
            &ip.payload()[..8],
            &[
                3,
                4,
                icmp.checksum().to_be_bytes()[0],
                icmp.checksum().to_be_bytes()[1],
                0,
                0,
                0x05,
                0x9e
            ]
        );
        assert_eq!(icmp.next_hop_mtu(), 1438);
        assert_eq!(&icmp.data()[..28], &orig[..28]);
        // Too small an output buffer is an error, not a panic.
        assert_eq!(
            build_frag_needed(Ipv4Addr::LOCALHOST, &orig, 1400, &mut out[..100]),
            Err(Error::BufferTooSmall)
        );
    }
}
