//! The cleartext packets the demo sends through the tunnels: UDP datagrams from a spoke's host
//! to the hub LAN host, IPv4 or IPv6, with a tag in the first payload bytes; the hub LAN echoes
//! each one back with addresses and ports swapped, and the spoke checks what came back.

use std::net::{IpAddr, Ipv6Addr};

use ikehub::wire::udp::HEADER_LEN as UDP_HEADER;
use ikehub::wire::{IpProtocol, Ipv4Packet, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr};
use ikehub::wire::{ipv4::HEADER_LEN as IPV4_HEADER, ipv6::HEADER_LEN as IPV6_HEADER};

use crate::bench::packet::udp_datagram;

const TAG_LEN: usize = 8;

/// A datagram as [`parse`] read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ports: (u16, u16),
    pub tag: u64,
}

/// Writes a UDP datagram of about `total_len` bytes (at least the headers and the tag) from
/// `src` to `dst` into `buf`; returns its length. Both addresses are of one family.
pub fn write(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    ports: (u16, u16),
    total_len: usize,
    tag: u64,
) -> usize {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let min = IPV4_HEADER + UDP_HEADER + TAG_LEN;
            if buf.len() < min {
                return 0;
            }
            udp_datagram(buf, s, d, ports, total_len.max(min), tag)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => write6(buf, s, d, ports, total_len, tag),
        _ => 0,
    }
}

/// IPv6/UDP. The UDP checksum is mandatory over IPv6 (RFC 8200 §8.1): over the pseudo-header
/// (addresses, upper-layer length, next header) and the UDP header and data.
fn write6(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ports: (u16, u16),
    total_len: usize,
    tag: u64,
) -> usize {
    const MIN: usize = IPV6_HEADER + UDP_HEADER + TAG_LEN;
    if buf.len() < MIN {
        return 0;
    }
    let total_len = total_len.clamp(MIN, buf.len());
    let udp_len = total_len - IPV6_HEADER;
    let payload = IPV6_HEADER + UDP_HEADER;
    let ip = Ipv6Repr::new(src, dst, IpProtocol::UDP, udp_len);
    let udp = UdpRepr {
        src_port: ports.0,
        dst_port: ports.1,
    };
    if ip.emit(&mut buf[..IPV6_HEADER]).is_err()
        || udp
            .emit(&mut buf[IPV6_HEADER..payload], udp_len - UDP_HEADER)
            .is_err()
    {
        return 0;
    }
    buf[payload..payload + TAG_LEN].copy_from_slice(&tag.to_be_bytes());
    for (i, b) in buf[payload + TAG_LEN..total_len].iter_mut().enumerate() {
        *b = i as u8;
    }
    UdpPacket::new_unchecked(&mut buf[IPV6_HEADER..total_len])
        .fill_checksum(src.into(), dst.into());
    total_len
}

/// Reads a datagram written by [`write`] (and maybe echoed): an IPv4 or IPv6 header of the
/// right length for the buffer, UDP directly after it, the tag; over IPv6 a correct UDP
/// checksum (IPv4: the header checksum). `None` for anything else.
pub fn parse(p: &[u8]) -> Option<Datagram> {
    match p.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(p).ok()?;
            if ip.header_len() != IPV4_HEADER
                || usize::from(ip.total_len()) != p.len()
                || ip.protocol() != IpProtocol::UDP
                || !ip.verify_checksum()
            {
                return None;
            }
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            udp(&p[IPV4_HEADER..], src, dst)
        }
        6 => {
            let ip = Ipv6Packet::new_checked(p).ok()?;
            if IPV6_HEADER + usize::from(ip.payload_len()) != p.len()
                || ip.next_header() != IpProtocol::UDP
            {
                return None;
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let u = &p[IPV6_HEADER..];
            let checked = UdpPacket::new_checked(u).ok()?;
            if !checked.verify_checksum(src.into(), dst.into()) {
                return None;
            }
            udp(u, src.into(), dst.into())
        }
        _ => None,
    }
}

fn udp(u: &[u8], src: IpAddr, dst: IpAddr) -> Option<Datagram> {
    let h = UdpPacket::new_checked(u).ok()?;
    if usize::from(h.len()) != u.len() {
        return None;
    }
    let tag = u.get(UDP_HEADER..UDP_HEADER + TAG_LEN)?;
    Some(Datagram {
        src,
        dst,
        ports: (h.src_port(), h.dst_port()),
        tag: u64::from_be_bytes(tag.try_into().ok()?),
    })
}

/// Turns a datagram [`parse`] accepted into its echo: addresses and ports swapped. Neither
/// changes a checksum (the IPv4 header's, or UDP's over either pseudo-header: the sums are
/// commutative).
pub fn swap(p: &mut [u8]) {
    let (addr, len, udp) = match p.first().map(|b| b >> 4) {
        Some(4) => (12, 4, IPV4_HEADER),
        Some(6) => (8, 16, IPV6_HEADER),
        _ => return,
    };
    if p.len() < udp + UDP_HEADER {
        return;
    }
    let (a, b) = p[addr..addr + 2 * len].split_at_mut(len);
    a.swap_with_slice(b);
    let (a, b) = p[udp..udp + 4].split_at_mut(2);
    a.swap_with_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(src: IpAddr, dst: IpAddr) {
        let mut buf = [0u8; 1500];
        for len in [0, 64, 1001, 1400, 4000] {
            let n = write(
                &mut buf,
                src,
                dst,
                (9000, 7),
                len,
                0x0102_0304_0506_0708 + len as u64,
            );
            assert!(n > 0 && n <= 1500);
            let d = parse(&buf[..n]).expect("parses");
            assert_eq!(
                d,
                Datagram {
                    src,
                    dst,
                    ports: (9000, 7),
                    tag: 0x0102_0304_0506_0708 + len as u64
                }
            );
            swap(&mut buf[..n]);
            let e = parse(&buf[..n]).expect("the echo parses: checksums unchanged");
            assert_eq!((e.src, e.dst, e.ports, e.tag), (dst, src, (7, 9000), d.tag));
            // Truncated or with a flipped payload bit: refused.
            assert_eq!(parse(&buf[..n - 1]), None);
            buf[n - 1] ^= 1;
            if src.is_ipv6() {
                assert_eq!(parse(&buf[..n]), None, "the UDP checksum covers the data");
            }
        }
    }

    #[test]
    fn datagrams_parse_and_echo_in_both_families() {
        round_trip(
            "198.18.1.1".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        );
        round_trip(
            "2001:db8:1::1".parse().unwrap(),
            "2001:db8:ffff::1".parse().unwrap(),
        );
    }

    /// The IPv6 UDP checksum computed independently of `wire::checksum`: the pseudo-header
    /// written out byte by byte as RFC 8200 §8.1 draws it, summed in 16-bit words with
    /// end-around carry (RFC 1071).
    #[test]
    fn ipv6_udp_checksum_is_the_rfc_8200_one() {
        let (s, d): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:1::7".parse().unwrap(),
            "2001:db8:ffff::1".parse().unwrap(),
        );
        let mut buf = [0u8; 100];
        let n = write(&mut buf, s.into(), d.into(), (9000, 7), 100, 42);
        let udp = &buf[40..n];
        let mut words: Vec<u8> = Vec::new();
        words.extend_from_slice(&s.octets());
        words.extend_from_slice(&d.octets());
        words.extend_from_slice(&(udp.len() as u32).to_be_bytes());
        words.extend_from_slice(&[0, 0, 0, 17]);
        words.extend_from_slice(udp);
        let mut acc: u64 = 0;
        for w in words.chunks(2) {
            acc += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        assert_eq!(
            acc, 0xffff,
            "a datagram with its checksum set sums to all ones"
        );
        assert_ne!(&udp[6..8], &[0, 0]);
    }
}
