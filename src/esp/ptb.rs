//! The ICMPv6 Packet Too Big message (RFC 4443 §3.2) the encapsulator writes back into the
//! cleartext side when an IPv6 packet does not fit the tunnel: IPv6 routers never fragment
//! (RFC 8200 §5), so the sender must learn the size that fits.
//!
//! Kept here, beside its one caller, until the wire layer has its own ICMPv6 builder.

use std::net::{IpAddr, Ipv6Addr};

use crate::wire::{self, IpProtocol, Ipv6Packet, Ipv6Repr, checksum, ipv6};

/// ICMPv6 type of Packet Too Big (RFC 4443 §3.2).
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Type, code, checksum and the 32-bit MTU.
pub const HEADER_LEN: usize = 8;
/// Hop limit of the messages we originate (the same 64 as our IPv4 packets).
const HOP_LIMIT: u8 = 64;

/// Builds into `out` a complete IPv6 packet carrying an ICMPv6 Packet Too Big for `original`
/// (the cleartext IPv6 packet that did not fit), from `source` to the original sender,
/// announcing `mtu`. The message quotes as much of the original packet as keeps it within
/// the IPv6 minimum MTU (RFC 4443 §3.2). Returns the length written.
///
/// RFC 4443 §2.4 (e): no error answers an ICMPv6 error message, nor a packet whose source
/// does not name a single node (unspecified or multicast); those are `Malformed`. A Packet
/// Too Big may answer a multicast destination (§2.4 e.2).
pub fn build_packet_too_big(
    source: Ipv6Addr,
    original: &[u8],
    mtu: u32,
    out: &mut [u8],
) -> wire::Result<usize> {
    let orig = Ipv6Packet::new_checked(original)?;
    let to = orig.src_addr();
    if to.is_unspecified() || to.is_multicast() {
        return Err(wire::Error::Malformed);
    }
    // An ICMPv6 error right after the fixed header (types below 128, RFC 4443 §2.1). Behind
    // extension headers one would go unnoticed; the sender's stack has the same rule.
    if orig.next_header() == IpProtocol::ICMPV6 && orig.payload().first().is_none_or(|t| *t < 128) {
        return Err(wire::Error::Malformed);
    }
    let packet = orig.packet();
    let quote_len = packet
        .len()
        .min(ipv6::MIN_MTU - ipv6::HEADER_LEN - HEADER_LEN);
    let icmp_len = HEADER_LEN + quote_len;
    let total = ipv6::HEADER_LEN + icmp_len;
    if out.len() < total {
        return Err(wire::Error::BufferTooSmall);
    }
    Ipv6Repr {
        hop_limit: HOP_LIMIT,
        ..Ipv6Repr::new(source, to, IpProtocol::ICMPV6, icmp_len)
    }
    .emit(out)?;
    let icmp = &mut out[ipv6::HEADER_LEN..total];
    icmp[0] = TYPE_PACKET_TOO_BIG;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[HEADER_LEN..].copy_from_slice(&packet[..quote_len]);
    // RFC 4443 §2.3: the checksum covers the RFC 8200 §8.1 pseudo-header and the message.
    let c = checksum::combine(&[
        checksum::pseudo_header(
            IpAddr::V6(source),
            IpAddr::V6(to),
            IpProtocol::ICMPV6,
            icmp_len as u32,
        ),
        checksum::sum(icmp),
    ]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}
