//! ICMPv6 (RFC 4443) header view, and the Packet Too Big message (RFC 4443 §3.2) the
//! concentrator writes back into the cleartext side when an IPv6 packet no longer fits the
//! tunnel: IPv6 routers never fragment (RFC 8200 §5), so path MTU discovery is the only way.

use std::net::Ipv6Addr;

use super::ip::IpProtocol;
use super::ipv6::{self, Ipv6Packet, Ipv6Repr};
use super::ipv6_ext;
use super::{Error, Result, be16, be32, checksum, put16, put32};

/// Length of the ICMPv6 header (type, code, checksum, 4 bytes of message body).
pub const HEADER_LEN: usize = 8;
/// ICMPv6 type 2: packet too big.
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// ICMPv6 type 137: redirect (RFC 4861 §4.5), never answered with an error (RFC 4443 §2.4 e.2).
pub const TYPE_REDIRECT: u8 = 137;
/// Types below this are errors, from it on informational (RFC 4443 §2.1).
pub const FIRST_INFORMATIONAL_TYPE: u8 = 128;
/// An ICMPv6 error carries as much of the offending packet as keeps it within the minimum MTU
/// (RFC 4443 §2.4 c).
pub const MAX_ERROR_LEN: usize = ipv6::MIN_MTU;
/// Hop limit of the messages this daemon originates (as for its ICMPv4 ones; RFC 4443 leaves
/// it to the node).
pub const HOP_LIMIT: u8 = 64;

/// A zero-copy view of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
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

    /// For Packet Too Big: the MTU of the next-hop link (RFC 4443 §3.2).
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// True for error messages (types 0 to 127).
    pub fn is_error(&self) -> bool {
        self.msg_type() < FIRST_INFORMATIONAL_TYPE
    }

    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Verifies the checksum over the RFC 8200 §8.1 pseudo-header of the packet's addresses
    /// and the whole message.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        let pseudo = checksum::pseudo_header(src.into(), dst.into(), IpProtocol::ICMPV6, len);
        checksum::combine(&[pseudo, checksum::sum(b)]) == 0
    }
}

/// A parsed ICMPv6 header: type, code and the 4 type-specific bytes; the data follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv6Repr {
    pub msg_type: u8,
    pub code: u8,
    pub rest_of_header: u32,
}

impl Icmpv6Repr {
    /// A Packet Too Big header with the next-hop MTU.
    pub fn packet_too_big(mtu: u32) -> Self {
        Self {
            msg_type: TYPE_PACKET_TOO_BIG,
            code: 0,
            rest_of_header: mtu,
        }
    }

    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv6Packet<T>) -> Result<Self> {
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

    /// Writes header and `data` into `buf` and fills the checksum over the pseudo-header of
    /// `src` and `dst` (the addresses of the IPv6 header that will carry it) and the message;
    /// returns the message length.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, buf: &mut [u8], data: &[u8]) -> Result<usize> {
        let len = HEADER_LEN + data.len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall);
        }
        let len32 = u32::try_from(len).map_err(|_| Error::Malformed)?;
        buf[0] = self.msg_type;
        buf[1] = self.code;
        put16(buf, 2, 0);
        put32(buf, 4, self.rest_of_header);
        buf[HEADER_LEN..len].copy_from_slice(data);
        let pseudo = checksum::pseudo_header(src.into(), dst.into(), IpProtocol::ICMPV6, len32);
        let c = checksum::combine(&[pseudo, checksum::sum(&buf[..len])]);
        put16(buf, 2, c);
        Ok(len)
    }
}

/// Whether RFC 4443 §2.4 (e) lets a node answer `original` with an error: not when it is an
/// ICMPv6 error or a redirect, or too short to tell (e.1, e.2); not when its source does not
/// name one node, unspecified or multicast (e.6). Packet Too Big may answer a multicast
/// destination (e.3). A packet whose header chain does not parse gets no answer either.
pub fn may_answer_with_error<T: AsRef<[u8]>>(original: &Ipv6Packet<T>) -> bool {
    let src = original.src_addr();
    if src.is_unspecified() || src.is_multicast() {
        return false;
    }
    let Ok(upper) = ipv6_ext::upper_layer(original) else {
        return false;
    };
    if upper.protocol != IpProtocol::ICMPV6 {
        return true;
    }
    if upper.is_later_fragment() {
        // A later fragment does not show the ICMPv6 type; Linux answers it too.
        return true;
    }
    original
        .packet()
        .get(upper.offset)
        .is_some_and(|t| *t >= FIRST_INFORMATIONAL_TYPE && *t != TYPE_REDIRECT)
}

/// Builds into `out` a complete IPv6 packet carrying an ICMPv6 Packet Too Big for `original`
/// (the cleartext packet that did not fit), from `source` to the original sender, announcing
/// `mtu`. Returns the length written, or `None` when RFC 4443 §2.4 (e) forbids an answer
/// (see [`may_answer_with_error`]).
///
/// The message quotes as much of the original packet as keeps the whole message within the
/// minimum MTU of 1280 bytes (RFC 4443 §2.4 c). It never announces less than 1280: a tunnel
/// whose inner MTU falls below that must fragment its outer packets instead (RFC 8200 §5).
pub fn build_packet_too_big(
    source: Ipv6Addr,
    original: &[u8],
    mtu: u32,
    out: &mut [u8],
) -> Result<Option<usize>> {
    let orig = Ipv6Packet::new_checked(original)?;
    if !may_answer_with_error(&orig) {
        return Ok(None);
    }
    let quote = orig.packet();
    let quote = &quote[..quote
        .len()
        .min(MAX_ERROR_LEN - ipv6::HEADER_LEN - HEADER_LEN)];
    let icmp_len = HEADER_LEN + quote.len();
    let total = ipv6::HEADER_LEN + icmp_len;
    if out.len() < total {
        return Err(Error::BufferTooSmall);
    }
    let dst = orig.src_addr();
    Ipv6Repr {
        hop_limit: HOP_LIMIT,
        ..Ipv6Repr::new(source, dst, IpProtocol::ICMPV6, icmp_len)
    }
    .emit(out)?;
    Icmpv6Repr::packet_too_big(mtu.max(ipv6::MIN_MTU as u32)).emit(
        source,
        dst,
        &mut out[ipv6::HEADER_LEN..total],
        quote,
    )?;
    Ok(Some(total))
}

#[cfg(test)]
mod tests;
