//! The Internet checksum (RFC 1071), used by the IPv4 header, ICMP, ICMPv6, TCP and UDP.

use std::net::IpAddr;

use super::ip::IpProtocol;

/// Ones'-complement sum of `data` folded to 16 bits, not yet complemented.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    fold(acc)
}

/// Folds carries back into the low 16 bits.
pub fn fold(mut acc: u32) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The checksum field value for `data` (complemented sum).
pub fn checksum(data: &[u8]) -> u16 {
    !(fold(sum(data)) as u16)
}

/// Combines partial sums of several pieces (each from [`sum`]) into the checksum field value.
pub fn combine(parts: &[u32]) -> u16 {
    let mut acc = 0u32;
    for p in parts {
        acc = fold(acc + p);
    }
    !(acc as u16)
}

/// Sum of the pseudo-header that TCP, UDP and ICMPv6 checksums cover: for IPv4 the source,
/// destination, protocol and length (RFC 768, RFC 793); for IPv6 the source, destination,
/// 32-bit upper-layer length and next header (RFC 8200 §8.1). `src` and `dst` are of one
/// family (the caller's packet header); `upper_len` is the length of the upper-layer header
/// and data. Add the sum of the upper-layer bytes and [`combine`].
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: IpProtocol, upper_len: u32) -> u32 {
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum(&s.octets()) + sum(&d.octets()),
        (s, d) => sum(&v6_octets(s)) + sum(&v6_octets(d)),
    };
    fold(addrs + u32::from(protocol.0) + (upper_len >> 16) + (upper_len & 0xffff))
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_header_sums_the_rfc_layouts() {
        // RFC 8200 §8.1: source, destination, 32-bit length, three zero bytes, next header.
        let (s6, d6): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8:ff::2".parse().unwrap(),
        );
        let mut bytes = Vec::new();
        for a in [s6, d6] {
            if let IpAddr::V6(a) = a {
                bytes.extend_from_slice(&a.octets());
            }
        }
        bytes.extend_from_slice(&70_000u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(
            pseudo_header(s6, d6, IpProtocol::ICMPV6, 70_000),
            sum(&bytes)
        );
        // RFC 768: source, destination, zero, protocol, 16-bit length.
        let (s4, d4): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        );
        let bytes = [192, 0, 2, 1, 198, 51, 100, 7, 0, 17, 0x05, 0xdc];
        assert_eq!(pseudo_header(s4, d4, IpProtocol::UDP, 1500), sum(&bytes));
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&d), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
        assert_eq!(sum(&[0xff]), 0xff00);
    }
}
